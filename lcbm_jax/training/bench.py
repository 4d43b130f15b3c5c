"""`lcbm bench train`: training tokens/s and MFU of a preset on synthetic batches (no data pipeline).

  lcbm bench train --preset demo --steps 10 --batch-size 8 --seq-len 512
  lcbm bench train --preset demo --attention-block 0 128   # full vs block-skipping causal attention

The peak used for MFU is the data-sheet figure on GPU/TPU and a measured float32 matmul on CPU, so
on CPU the MFU says how close the step gets to what this machine's matmuls can do.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import jax
import numpy as np

from lcbm_jax import sharding
from lcbm_jax.model import presets
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import metrics as metrics_lib
from lcbm_jax.training import train


def synthetic_batch(model_cfg, batch_size: int, seq_len: int, seed: int) -> dict:
  """One segment per row with one image up front; every text token is a target."""
  rs = np.random.RandomState(seed)
  v, n = model_cfg.vision, model_cfg.num_image_tokens
  ids = rs.randint(4, model_cfg.text.vocab_size, size=(batch_size, seq_len)).astype(np.int32)
  n_img = min(n, seq_len // 2) if model_cfg.max_images else 0
  ids[:, 1:1 + n_img] = model_cfg.image_token_id
  targets = np.roll(ids, -1, axis=1)
  loss_mask = np.ones((batch_size, seq_len), np.float32)
  loss_mask[:, :1 + n_img] = 0.0
  loss_mask[:, -1] = 0.0
  images = np.zeros((batch_size, model_cfg.max_images, v.image_size, v.image_size, 3), np.float32)
  if model_cfg.max_images:
    images[:, 0] = rs.randn(batch_size, v.image_size, v.image_size, 3)
  return {"input_ids": ids, "images": images, "segment_ids": np.ones_like(ids),
          "positions": np.tile(np.arange(seq_len, dtype=np.int32), (batch_size, 1)), "targets": targets,
          "loss_mask": loss_mask, "task_ids": np.zeros_like(ids)}


def run(preset: str, steps: int, batch_size: int, seq_len: int, dtype: str) -> dict:
  config = config_lib.base_config()
  config.model.preset = preset
  config.data.batch_size, config.data.seq_len = batch_size, seq_len
  config.num_steps = steps + 10
  config.optim.warmup_steps = 1
  model_cfg = dataclasses.replace(presets.get(preset), param_dtype=dtype, compute_dtype=dtype)
  mesh = sharding.make_mesh()
  t0 = time.perf_counter()
  compiled = train.compile_steps(config, model_cfg, mesh)
  compile_s = time.perf_counter() - t0
  rng = jax.random.key(0)
  state = compiled.init(rng)
  batch = {k: jax.device_put(x, compiled.batch_sharding)
           for k, x in synthetic_batch(model_cfg, batch_size, seq_len, 0).items()}
  state, m = compiled.train_step(state, batch, rng)   # warm-up
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = compiled.train_step(state, batch, rng)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - t0) / steps
  tokens = batch_size * seq_len
  flops = metrics_lib.flops_per_step(compiled.abstract_state.params, compiled.trainable, tokens, seq_len,
                                     batch_size * model_cfg.max_images)
  peak = metrics_lib.peak_flops_per_device(0.0) * jax.device_count()
  return {"preset": preset, "dtype": dtype, "devices": jax.device_count(), "compile_s": compile_s,
          "step_s": step_s, "tokens_per_s": tokens / step_s, "achieved_gflops": flops / step_s / 1e9,
          "peak_gflops": peak / 1e9, "mfu": flops / step_s / peak, "loss": float(m["loss"])}


def cli_bench(args) -> int:
  """One run per --attention-block value (0 = full attention), printed with its speed-up over the first."""
  from lcbm_jax.model import attention
  first, default = None, attention.CAUSAL_BLOCK
  for block in args.attention_block or [default]:
    attention.CAUSAL_BLOCK = block   # read when the step is traced, so each run compiles its own
    try:
      r = run(args.preset, args.steps, args.batch_size, args.seq_len, args.dtype)
    finally:
      attention.CAUSAL_BLOCK = default
    first = first or r
    print(f"preset {r['preset']} ({r['dtype']}) attention block {block or 'off'} on {r['devices']} device(s): "
          f"compile {r['compile_s']:.1f} s, step {r['step_s'] * 1e3:.0f} ms, {r['tokens_per_s']:.0f} tokens/s "
          f"({first['step_s'] / r['step_s']:.2f}x), {r['achieved_gflops']:.1f} GFLOP/s "
          f"of {r['peak_gflops']:.1f} peak = MFU {100 * r['mfu']:.1f}%", file=sys.stderr)
  return 0
