"""Shared pieces of the training tests: a tiny config and synthetic batches in the §5 layout."""
from __future__ import annotations

import numpy as np

from data_pipeline import batch as batch_lib
from lcbm_jax.model import presets
from lcbm_jax.training import config as config_lib


def tiny_config(**optim):
  """base_config with the tiny preset and shapes that split over 8 devices."""
  c = config_lib.base_config()
  c.model.preset = "tiny"
  c.num_steps = 20
  c.data.tasks = ("behavior_simulation", "likes_high_low")
  c.data.weights = (1.0, 1.0)
  c.data.seq_len = 48
  c.data.batch_size = 8
  c.data.images_per_batch = 8   # the budget synthetic_batch fills: one image per row
  c.optim.warmup_steps = 2
  c.optim.lr = 3e-3
  for k, v in optim.items():
    c.optim[k] = v
  return c


def synthetic_batch(config, seed: int, groups: int = 1) -> dict:
  """Two packed segments per row, one image in the first, targets on each segment's second half;
  the images in `groups` image groups (`train.image_groups` of the mesh the step runs on)."""
  cfg = presets.get(config.model.preset)
  b, l = config.data.batch_size, config.data.seq_len
  v, n_img = cfg.vision, cfg.num_image_tokens
  rs = np.random.RandomState(seed)
  full = batch_lib.empty_batch(b, l, groups, b // groups, v.image_size, segments=2)
  batch = {k: full[k] for k in batch_lib.STEP_KEYS}   # the step's keys (sample_ids stay on the host)
  ids = batch["input_ids"]
  ids[:] = rs.randint(4, cfg.text.vocab_size, size=(b, l))
  ids[ids == cfg.image_token_id] = 3   # image ids only where the images go
  ids[:, 2:2 + n_img] = cfg.image_token_id
  cut, end = 2 + n_img + 8, l - 4   # segment 1 = [0, cut), segment 2 = [cut, end), then padding
  for seg, (lo, hi) in enumerate(((0, cut), (cut, end)), start=1):
    batch["segment_ids"][:, lo:hi] = seg
    batch["positions"][:, lo:hi] = np.arange(hi - lo)
    batch["targets"][:, lo:hi - 1] = ids[:, lo + 1:hi]
    batch["loss_mask"][:, (lo + hi) // 2:hi - 1] = 1.0
    batch["task_ids"][:, lo:hi] = (np.arange(b)[:, None] + seg) % 2
  ids[:, end:] = 0
  return batch_lib.put_images(batch, list(rs.randn(b, 1, v.image_size, v.image_size, 3).astype(np.float32)),
                              cfg.image_token_id)


def subprocess_env(root, devices: int = 8) -> dict:
  """The environment of an `lcbm` subprocess: CPU with `devices` devices, a JAX compilation cache under
  `root` shared by the runs of one test module, and this checkout first on the path."""
  import os
  import pathlib
  repo = pathlib.Path(__file__).resolve().parents[1]
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def built_corpus(root, instructions: bool = False) -> str:
  """A small generated corpus built to ArrayRecord under `root` (with its LLaVA-JSON instruction rows
  when `instructions`); returns the data dir."""
  import os

  from data_pipeline import commands, world
  counts = {("cbc", "train"): 40, ("cbc", "test"): 8, ("blift", "train"): 4, ("blift", "test"): 2,
            ("tweets", "train"): 80, ("tweets", "test_time"): 16, ("tweets", "test_brand"): 4}
  corpus, data = os.path.join(root, "corpus"), os.path.join(root, "data")
  world.generate(corpus, seed=0, progress=False, counts=counts, instructions=instructions)
  commands.build_corpus("behavior_world", corpus, data)
  return data
