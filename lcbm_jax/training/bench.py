"""`lcbm bench train`: training tokens/s and MFU of a preset on synthetic batches (no data pipeline).

  lcbm bench train --preset demo --steps 10 --batch-size 8 --seq-len 512
  lcbm bench train --preset demo --attention-block 0 128   # full vs block-skipping causal attention

The peak used for MFU is the data-sheet figure on GPU/TPU and a measured float32 matmul on CPU, so
on CPU the MFU says how close the step gets to what this machine's matmuls can do.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from data_pipeline import batch as batch_lib
from lcbm_jax import sharding
from lcbm_jax.model import presets
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import metrics as metrics_lib
from lcbm_jax.training import profile as profile_lib
from lcbm_jax.training import train


def synthetic_batch(model_cfg, batch_size: int, seq_len: int, seed: int, groups: int = 1,
                    images_per_batch: int | None = None) -> dict:
  """The step's keys of a batch (`data_pipeline.batch`): one segment per row with one image up front,
  `groups` image groups sharing `images_per_batch` slots (default: data.images_per_batch's, room for
  max_images per row); every text token is a target."""
  rs = np.random.RandomState(seed)
  v, n = model_cfg.vision, model_cfg.num_image_tokens
  with_images = bool(model_cfg.max_images)
  budget = batch_size * model_cfg.max_images if images_per_batch is None else images_per_batch
  full = batch_lib.empty_batch(batch_size, seq_len, groups, budget // groups, v.image_size, 1)
  batch = {k: full[k] for k in batch_lib.STEP_KEYS}
  ids = batch["input_ids"]
  ids[:] = rs.randint(4, model_cfg.text.vocab_size, size=(batch_size, seq_len))
  ids[ids == model_cfg.image_token_id] = 3   # image ids only where the images go
  n_img = min(n, seq_len // 2) if with_images else 0
  ids[:, 1:1 + n_img] = model_cfg.image_token_id
  batch["targets"][:] = np.roll(ids, -1, axis=1)
  batch["loss_mask"][:, 1 + n_img:-1] = 1.0
  images = rs.randn(batch_size, 1 if with_images else 0, v.image_size, v.image_size, 3).astype(np.float32)
  batch_lib.put_images(batch, list(images), model_cfg.image_token_id)
  batch["segment_ids"][:] = 1
  batch["positions"][:] = np.arange(seq_len)
  batch["task_ids"][:] = 0
  return batch


def run(preset: str, steps: int, batch_size: int, seq_len: int, dtype: str,
        attention_block: int | None = None, profile: bool = False) -> dict:
  """One measurement of `preset` (attention_block None = the preset's own, 0 = full attention); with
  `profile`, r["profile"] is the per-component table (`training/profile.py`)."""
  config = config_lib.base_config()
  config.model.preset = preset
  config.data.batch_size, config.data.seq_len = batch_size, seq_len
  config.data.images_per_batch = batch_size   # the image budget the synthetic batch fills: one per row
  config.num_steps = steps + 10
  config.optim.warmup_steps = 1
  model_cfg = dataclasses.replace(presets.get(preset), param_dtype=dtype, compute_dtype=dtype)
  if attention_block is not None:
    model_cfg = dataclasses.replace(model_cfg, text=dataclasses.replace(model_cfg.text,
                                                                        attention_block=attention_block))
  mesh = sharding.make_mesh()
  t0 = time.perf_counter()
  compiled = train.compile_steps(config, model_cfg, mesh)
  compile_s = time.perf_counter() - t0
  rng = jax.random.key(0)
  state = compiled.init(rng)
  batch = {k: jax.device_put(x, compiled.batch_sharding)
           for k, x in synthetic_batch(model_cfg, batch_size, seq_len, 0, train.image_groups(config, mesh),
                                       train.image_budget(config, model_cfg)).items()}
  state, m = compiled.train_step(state, batch, rng)   # warm-up
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = compiled.train_step(state, batch, rng)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - t0) / steps
  tokens = batch_size * seq_len
  flops = metrics_lib.flops_per_step(compiled.abstract_state.params, compiled.trainable, tokens, seq_len,
                                     int(m["images"]))
  peak = metrics_lib.peak_flops_per_device(0.0) * jax.device_count()
  extra = {}
  if profile:
    def run_once():
      nonlocal state
      state, out = compiled.train_step(state, batch, rng)
      return out
    images = train.image_budget(config, model_cfg)
    seconds = profile_lib.components(compiled.train_step, run_once, steps=3)
    shapes = profile_lib.matmul_shapes(model_cfg, batch_size, seq_len, images)
    matmul = {name: profile_lib.matmul_flops_per_s(*shape, dtype=dtype) for name, shape in shapes.items()}
    extra["profile"] = profile_lib.format_table(
        seconds, profile_lib.model_flops(model_cfg, batch_size, seq_len, images), matmul)
  return {**extra,"preset": preset, "dtype": dtype, "devices": jax.device_count(), "compile_s": compile_s,
          "step_s": step_s, "tokens_per_s": tokens / step_s, "achieved_gflops": flops / step_s / 1e9,
          "peak_gflops": peak / 1e9, "mfu": flops / step_s / peak, "loss": float(m["loss"])}

