"""Where training numbers go: JSONL, TensorBoard, optional W&B, a final plot, and the MFU estimate.

FLOPs are counted from parameter shapes (not from a model config), so the estimate follows whatever
the model really holds: 6 * N * tokens for the LLM matmuls (N without the embedding table), plus
attention (12 * layers * heads * head_dim * seq_len per token), plus the vision tower and projector.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# bf16 dense peak FLOP/s per device by `device_kind` prefix (vendor data sheets, no sparsity).
_PEAK_FLOPS = {
    "NVIDIA H200": 989e12, "NVIDIA H100": 989e12, "NVIDIA A100": 312e12, "NVIDIA L4": 121e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6": 918e12,
}


def measure_matmul_flops(n: int = 1024, reps: int = 5) -> float:
  """Achieved float32 matmul FLOP/s of one device: the CPU's practical ceiling."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(reps):
    f(a).block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - start)


def peak_flops_per_device(configured: float) -> float:
  """`configured` if > 0; else the data-sheet figure for accelerators, a measured matmul on CPU."""
  if configured > 0:
    return configured
  device = jax.devices()[0]
  if device.platform == "cpu":
    return measure_matmul_flops()
  for prefix, flops in _PEAK_FLOPS.items():
    if device.device_kind.startswith(prefix):
      return flops
  return measure_matmul_flops()


def _size(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def flops_per_step(params: Any, trainable: Any, tokens: int, seq_len: int, num_images: int) -> float:
  """Training FLOPs of one step with `tokens` real tokens and `num_images` encoded images."""
  llm = params["llm"]
  llm_matmul = _size(llm) - _size(llm["embed_tokens"])
  layers, _, heads, head_dim = llm["layers"]["attn"]["q"]["kernel"].shape
  flops = 6 * llm_matmul * tokens + 12 * layers * heads * head_dim * seq_len * tokens
  if "vision" in params:
    patches = params["vision"]["position_embedding"].shape[0]
    vision_trained = any(jax.tree.leaves(trainable["vision"]))
    # A frozen tower only runs forward (2 FLOPs per weight per patch); a trained one 6.
    flops += (6 if vision_trained else 2) * _size(params["vision"]) * patches * num_images
    flops += 6 * _size(params["projector"]) * (patches - 1) * num_images
  return float(flops)


class MetricsWriter:
  """One place to log a dict of scalars at a step; only process 0 writes."""

  def __init__(self, workdir: str, config_dict: dict, use_wandb: bool):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = self._wandb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    from tensorboardX import SummaryWriter   # slow to import (protobuf); only the main process writes
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    if use_wandb:
      try:
        import wandb   # optional dependency (pip install wandb), loaded only when log.wandb asks
      except ImportError:
        print("log.wandb is set but wandb is not installed (pip install wandb); logging without it")
      else:
        self._wandb = wandb.init(project="lcbm-jax", dir=workdir, config=config_dict)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **scalars}) + "\n")
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    if self._wandb is not None:
      self._wandb.log(scalars, step=step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot(jsonl_path: str, out_png: str) -> str:
  """metrics.png: train/eval loss, per-task loss, learning rate, throughput, against step."""
  import matplotlib   # slow to import; only the end-of-run plot draws
  matplotlib.use("Agg")   # headless: no display on a training host
  import matplotlib.pyplot as plt

  rows = read_jsonl(jsonl_path)
  def series(key):
    pts = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]

  fig, axes = plt.subplots(2, 2, figsize=(11, 7))
  ax = axes[0, 0]
  for key in ("train/loss", "eval/loss"):
    ax.plot(*series(key), label=key, marker="." if key.startswith("eval") else None)
  ax.set_title("loss"); ax.set_xlabel("step"); ax.set_yscale("log"); ax.legend()
  ax = axes[0, 1]
  for key in sorted({k for r in rows for k in r if k.startswith(("train/loss_", "eval/loss_"))}):
    ax.plot(*series(key), label=key)
  ax.set_title("loss per task"); ax.set_xlabel("step"); ax.set_yscale("log"); ax.legend(fontsize=7)
  ax = axes[1, 0]
  ax.plot(*series("train/lr")); ax.set_title("learning rate"); ax.set_xlabel("step")
  ax = axes[1, 1]
  ax.plot(*series("perf/tokens_per_s")); ax.set_title("tokens/s"); ax.set_xlabel("step")
  fig.tight_layout()
  fig.savefig(out_png, dpi=90)
  plt.close(fig)
  return out_png
