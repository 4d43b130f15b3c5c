"""`lcbm bench memory`: per-device memory of a real-size training step on a named target, compiled ahead of time.

  lcbm bench memory                                       # 7B on v5p-8, 13B on v5p-16, 7B on 8xH100; remat full, none
  lcbm bench memory --preset llava-1.5-7b --target v5p-8 --grad-accum 2 --remat full

Each report compiles the trainer's own step (`train.compile_steps`: the same shardings, donation and
batch layout as `lcbm train`) for the LLaVA-1.5 stage-2 / Behavior-LLaVA recipe (`config.llava_recipe`:
128 rows of 2,048 tokens a step, float32 weights computed in bfloat16, the state sharded over every
chip with FSDP, vision frozen) and reads `compiled.memory_analysis()`, as MaxText's `train_compile` does:

- TPU targets compile against the TPU topology on this host (`jax.experimental.topologies`), with
  `libtpu` beside jax. That is the compiler the run will use, so the figures are what it allocates.
  libtpu stays out of the default install (with it, every jax start probes for a TPU); put it in its
  own environment: `python -m venv --system-site-packages ~/tpu-aot && ~/tpu-aot/bin/pip install
  -e '.[tpu-aot]'`, then `~/tpu-aot/bin/lcbm bench memory`.
- GPU targets have no such compiler here: the step is compiled for as many CPU devices (a child
  process with `--xla_force_host_platform_device_count`) and its figures are labelled an estimate.
  XLA:CPU plans buffers differently from XLA:GPU (no cuDNN workspaces, its own fusion), so read them
  as the order of magnitude.

Peak per device = arguments (the state shard and the batch) + temporaries + outputs not aliased to
a donated argument + generated code. Where libtpu refuses the program for lack of HBM
(CompileTimeHbmOom), the report keeps the temporaries it says it needed and marks the row refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time

import jax

from lcbm_jax import sharding
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib, train

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Target:
  name: str
  platform: str            # "tpu": compiled by libtpu for the topology; "gpu": estimated on CPU devices
  chips: int
  hbm_gib: float           # memory per chip (data sheet)
  topology: str = ""       # jax.experimental.topologies name (TPU)


TARGETS = {t.name: t for t in (
    Target("v5p-8", "tpu", 4, 95.0, "v5p:2x2x1"),      # one host, 4 chips x 95 GiB HBM2e
    Target("v5p-16", "tpu", 8, 95.0, "v5p:2x2x2"),     # two hosts
    Target("v5e-8", "tpu", 8, 16.0, "v5e:2x4"),
    Target("8xH100", "gpu", 8, 80.0),
    Target("8xA100-80G", "gpu", 8, 80.0),
)}

# (preset, target, grad_accum): the launches the recipes' docstrings give (experiments/configs/
# llava_stage2.py, behavior_llava.py): 7B on a v5p-8 with fsdp 4 and 2 micro-batches, 7B on 8 GPUs of
# 80 GB with fsdp 8, and 13B on a v5p-16 with fsdp 8 and 2 micro-batches.
DEFAULT_REPORTS = (("llava-1.5-7b", "v5p-8", 2), ("llava-1.5-13b", "v5p-16", 2), ("llava-1.5-7b", "8xH100", 1))


def recipe(preset: str, chips: int, grad_accum: int, remat: str, batch_size: int = 128, seq_len: int = 2048):
  """The training config a report compiles: the LLaVA-1.5 stage-2 recipe on an FSDP mesh of `chips`."""
  c = config_lib.llava_recipe(preset, num_steps=5197, batch_size=batch_size, lr=2e-5, freeze=("^vision/",),
                              save_every=500)
  c.data.seq_len = seq_len
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, chips, 1
  c.optim.grad_accum = grad_accum
  c.model.remat = remat
  return c


def _tpu_devices(target: Target):
  from jax.experimental import topologies   # here: only TPU targets need it
  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=target.topology).devices
  except RuntimeError as e:
    raise UserError(
        f"target {target.name} compiles for TPU, which needs libtpu beside jax ({e}). Keep it out of this "
        "environment; make one for it: python -m venv --system-site-packages ~/tpu-aot && "
        "~/tpu-aot/bin/pip install -e '.[tpu-aot]' && ~/tpu-aot/bin/lcbm bench memory ...") from None


def measure(preset: str, target_name: str, grad_accum: int, remat: str, batch_size: int = 128,
            seq_len: int = 2048, devices=None) -> dict:
  """One report. devices: what to compile for (default: the target's TPU topology, or, for a GPU target,
  this process's CPU devices when there are exactly `chips` of them)."""
  target = TARGETS[target_name]
  if devices is None:
    if target.platform == "tpu":
      devices = _tpu_devices(target)
    else:
      devices = jax.devices("cpu")
      if len(devices) != target.chips:
        return _in_child(preset, target_name, grad_accum, remat, batch_size, seq_len)
  config = recipe(preset, target.chips, grad_accum, remat, batch_size, seq_len)
  model_cfg = train.model_config(config)
  mesh = sharding.make_mesh(1, target.chips, 1, devices=devices)
  t0 = time.perf_counter()
  steps = train.compile_steps(config, model_cfg, mesh, compile=False)
  arguments = _shard_bytes(steps.abstract_state, steps.state_shardings) + _shard_bytes(
      train.batch_spec(config, model_cfg, mesh), steps.batch_sharding)
  try:
    mem = steps.train_step.compile().memory_analysis()
  except jax.errors.JaxRuntimeError as e:
    # libtpu refuses a program whose buffers exceed the chip's HBM, and names what it needed.
    needed = refused_temporaries(str(e))
    if needed is None:
      raise
    mem = _Refused(argument_size_in_bytes=arguments, temp_size_in_bytes=needed)
  compile_s = time.perf_counter() - t0
  if mem is None:
    raise UserError(f"the {devices[0].platform} compiler gives no memory analysis for {target.name}")
  peak = (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
          - mem.alias_size_in_bytes + mem.generated_code_size_in_bytes)
  rows = config.data.batch_size // (target.chips * grad_accum)
  return {"preset": preset, "target": target.name, "platform": target.platform, "chips": target.chips,
          "device_kind": devices[0].device_kind, "estimate": target.platform != devices[0].platform,
          "grad_accum": grad_accum, "rows_per_device": rows, "seq_len": seq_len, "remat": model_cfg.remat_policy,
          "arguments_bytes": mem.argument_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
          "output_bytes": mem.output_size_in_bytes, "alias_bytes": mem.alias_size_in_bytes,
          "code_bytes": mem.generated_code_size_in_bytes, "peak_bytes": peak, "hbm_gib": target.hbm_gib,
          "fits": peak <= target.hbm_gib * GIB, "refused": isinstance(mem, _Refused), "compile_s": compile_s}


def refused_temporaries(message: str) -> int | None:
  """Bytes of temporaries a CompileTimeHbmOom error says the program needed ("(988.33G)", "(1.16T)");
  None for any other error."""
  needed = re.search(r"CompileTimeHbmOom.*HLO temporaries \(([\d.]+)([KMGT])\)", message, re.S)
  if not needed:
    return None
  return int(float(needed.group(1)) * 2 ** (10 * "KMGT".index(needed.group(2)) + 10))


@dataclasses.dataclass(frozen=True)
class _Refused:
  """What a compile refused for lack of HBM tells: the temporaries it needed; the arguments are the
  state's and batch's shards (counted here), the donated outputs alias them."""
  argument_size_in_bytes: int
  temp_size_in_bytes: int
  output_size_in_bytes: int = 0
  alias_size_in_bytes: int = 0
  generated_code_size_in_bytes: int = 0


def _shard_bytes(tree, shardings) -> int:
  """Bytes one device holds of `tree` (ShapeDtypeStructs) under `shardings` (a tree or one sharding)."""
  if not isinstance(shardings, jax.sharding.Sharding):
    return sum(_shard_bytes(x, s) for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))
  return sum(math.prod(shardings.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _in_child(preset, target_name, grad_accum, remat, batch_size, seq_len) -> dict:
  """The report compiled in a child process with `chips` CPU devices (a process's device count is
  fixed when jax starts)."""
  chips = TARGETS[target_name].chips
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={chips}")
  request = dict(preset=preset, target_name=target_name, grad_accum=grad_accum, remat=remat, batch_size=batch_size,
                 seq_len=seq_len)
  cmd = [sys.executable, "-m", "lcbm_jax.training.memory", json.dumps(request)]
  done = subprocess.run(cmd, env=env, capture_output=True, text=True)
  if done.returncode:
    raise UserError(f"the CPU estimate for {target_name} failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(reports: list[dict]) -> str:
  head = ("model", "target", "compiled for", "mesh", "rows/device", "remat", "state+batch GiB", "temporaries GiB",
          "peak GiB", "HBM GiB", "fits", "compile s")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in reports:
    how = f"{r['device_kind']}" + (" (estimate)" if r["estimate"] else "")
    lines.append("| " + " | ".join((
        r["preset"], r["target"], how, f"fsdp {r['chips']}",
        f"{r['rows_per_device']} x {r['seq_len']} (x{r['grad_accum']} accum)", r["remat"],
        f"{r['arguments_bytes'] / GIB:.1f}", f"{r['temp_bytes'] / GIB:.1f}", f"{r['peak_bytes'] / GIB:.1f}",
        f"{r['hbm_gib']:.0f}", "no (compile refused)" if r.get("refused") else "yes" if r["fits"] else "no",
        f"{r['compile_s']:.0f}")) + " |")
  return "\n".join(lines)


def _child_main(request: str) -> None:
  """The child's side of `_in_child`: one JSON request in argv, the report as the last stdout line."""
  r = measure(**json.loads(request), devices=jax.devices("cpu"))
  print(json.dumps(r))


if __name__ == "__main__":
  _child_main(sys.argv[1])
