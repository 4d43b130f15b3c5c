"""Where a compiled step's time goes: one JAX profiler trace, each XLA op charged to a model component.

  seconds = profile.components(compiled.train_step, run_once, steps=3)   # run_once() = one step
  print(profile.format_table(seconds, profile.model_flops(cfg, rows, seq_len, images), matmul))

XLA names its ops after fusions (`copy_bitcast_fusion.12`), not after model code, but every op of the
compiled HLO keeps the `op_name` of the JAX code it came from (`.../llm/.../layers/mlp/up/dot_general`).
The trace gives each op's wall time (the Perfetto JSON of `jax.profiler`); the HLO text maps the op to
its `op_name`; `component` maps that to one of COMPONENTS by the module path, so a rename in the model
shows up here as time charged to "other" rather than silently lost.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

COMPONENTS = ("vision", "projector", "splice", "attention", "mlp", "norms+residual", "logits+loss", "optimizer",
              "other")

_OP_NAME = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"", re.M)


def component(op_name: str) -> str:
  """The component of an HLO op from its JAX `op_name` (module path and primitive)."""
  in_model = "jvp(LCBM)" in op_name or "LCBM" in op_name
  if "/vision/" in op_name:
    return "vision"
  if "/projector/" in op_name:
    return "projector"
  if in_model and ("LCBM.embed" in op_name or "embed_tokens" in op_name):
    return "splice"
  if "/attn/" in op_name:
    return "attention"
  if "/mlp/" in op_name:
    return "mlp"
  if "layernorm" in op_name or "/norm/" in op_name:
    return "norms+residual"
  if "lm_head" in op_name or "loss_sums" in op_name or "logsumexp" in op_name:
    return "logits+loss"
  if in_model:
    return "norms+residual"   # the residual adds and casts between the named modules
  if "/while/" not in op_name:
    return "optimizer"        # after the gradient-accumulation scan: clipping, AdamW, the finiteness guard
  return "other"


def op_names(compiled) -> dict[str, str]:
  """HLO instruction name -> op_name, for every instruction of the compiled module (fusions included)."""
  return {m.group(1): m.group(2) for m in _OP_NAME.finditer(compiled.as_text())}


def op_times(run_once, steps: int) -> dict[str, float]:
  """Seconds per call of each XLA op (by HLO instruction name), from a trace of `steps` calls of
  `run_once()` (after one untraced call)."""
  jax.block_until_ready(run_once())
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    for _ in range(steps):
      jax.block_until_ready(run_once())
    jax.profiler.stop_trace()
    (path,) = glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  times: dict[str, float] = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(("$", "Thunk", "Slinky", "PjitFunction")):
      times[e["name"]] += e.get("dur", 0) / 1e6 / steps
  return dict(times)


def components(compiled, run_once, steps: int = 3) -> dict[str, float]:
  """Seconds per step charged to each of COMPONENTS; `run_once()` runs one step of `compiled` (and
  threads whatever state it donates)."""
  names = op_names(compiled)
  out = dict.fromkeys(COMPONENTS, 0.0)
  for op, seconds in op_times(run_once, steps).items():
    out[component(names[op]) if op in names else "other"] += seconds
  return out


def model_flops(cfg, rows: int, seq_len: int, images: int, vision_trained: bool = True) -> dict[str, float]:
  """Matmul FLOPs one training step computes per component (forward + backward = 3x forward; a frozen
  tower runs forward only), for `rows` x `seq_len` tokens and `images` encoded images, as the compiled
  step does them: every token and every budget slot, the causal blocks the decoder skips left out."""
  v, t = cfg.vision, cfg.text
  n, tv, k = rows * seq_len, v.num_patches + 1, cfg.vision_feature_index
  vis_layer = 2 * tv * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size) + 4 * tv * tv * v.hidden_size
  vision = images * (k * vis_layer + 2 * v.num_patches * 3 * v.patch_size ** 2 * v.hidden_size)
  projector = images * 2 * v.num_patches * (v.hidden_size * t.hidden_size + t.hidden_size ** 2)
  h, kv, d = t.num_attention_heads, t.num_key_value_heads, t.head_dim
  block = t.attention_block if t.attention_block and seq_len % t.attention_block == 0 else seq_len
  nb = seq_len // block
  score_pairs = block * block * nb * (nb + 1) // 2   # (query, key) pairs per row and head
  attention = t.num_hidden_layers * (2 * n * t.hidden_size * d * (2 * h + 2 * kv) + 4 * rows * h * d * score_pairs)
  mlp = t.num_hidden_layers * 2 * n * 3 * t.hidden_size * t.intermediate_size
  logits = 2 * n * t.hidden_size * t.vocab_size
  return {"vision": (3 if vision_trained else 1) * vision, "projector": 3 * projector, "attention": 3 * attention,
          "mlp": 3 * mlp, "logits+loss": 3 * logits}


def matmul_shapes(cfg, rows: int, seq_len: int, images: int) -> dict[str, tuple[int, int, int]]:
  """(m, k, n) of one matmul that each component's time is mostly made of, to time beside it."""
  v, t = cfg.vision, cfg.text
  n = rows * seq_len
  return {"vision": (max(images, 1) * (v.num_patches + 1), v.hidden_size, v.intermediate_size),
          "projector": (max(images, 1) * v.num_patches, v.hidden_size, t.hidden_size),
          "attention": (n, t.hidden_size, t.num_attention_heads * t.head_dim),
          "mlp": (n, t.hidden_size, t.intermediate_size),
          "logits+loss": (n, t.hidden_size, t.vocab_size)}


def matmul_flops_per_s(m: int, k: int, n: int, dtype="float32", reps: int = 5) -> float:
  """Achieved FLOP/s of one [m, k] x [k, n] matmul on the default device (the median of `reps`)."""
  a, b = jnp.ones((m, k), dtype), jnp.ones((k, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(f(a, b))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, b))
    times.append(time.perf_counter() - t0)
  return 2 * m * k * n / float(np.median(times))


def format_table(seconds: dict[str, float], flops: dict[str, float], matmul: dict[str, float]) -> str:
  """The per-component table: ms per step, share, achieved GFLOP/s, and the same-shape matmul's."""
  total = sum(seconds.values())
  lines = ["| component | ms / step | share | GFLOP / step | achieved GFLOP/s | same-shape matmul GFLOP/s |",
           "|---|---|---|---|---|---|"]
  for name in COMPONENTS:
    s, f = seconds.get(name, 0.0), flops.get(name)
    achieved = f"{f / s / 1e9:.1f}" if f and s else "-"
    lines.append(f"| {name} | {1e3 * s:.1f} | {s / total:.0%} | {f / 1e9:.2f} | {achieved} | "
                 f"{matmul[name] / 1e9:.1f} |" if f else
                 f"| {name} | {1e3 * s:.1f} | {s / total:.0%} | - | - | - |")
  f_all = sum(flops.values())
  lines.append(f"| total | {1e3 * total:.1f} | 100% | {f_all / 1e9:.2f} | {f_all / total / 1e9:.1f} | |")
  return "\n".join(lines)
