"""Shared pieces of the training tests: a tiny config and synthetic batches in the §5 layout."""
from __future__ import annotations

import numpy as np

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
  c.optim.warmup_steps = 2
  c.optim.lr = 3e-3
  for k, v in optim.items():
    c.optim[k] = v
  return c


def synthetic_batch(config, seed: int) -> dict:
  """Two packed segments per row, one image in the first, targets on each segment's second half."""
  cfg = presets.get(config.model.preset)
  b, l = config.data.batch_size, config.data.seq_len
  v, n_img = cfg.vision, cfg.num_image_tokens
  rs = np.random.RandomState(seed)
  ids = rs.randint(4, cfg.text.vocab_size, size=(b, l)).astype(np.int32)
  ids[:, 2:2 + n_img] = cfg.image_token_id
  segment_ids = np.zeros((b, l), np.int32)
  positions = np.zeros((b, l), np.int32)
  targets = np.zeros((b, l), np.int32)
  loss_mask = np.zeros((b, l), np.float32)
  task_ids = np.full((b, l), -1, np.int32)
  cut, end = 2 + n_img + 8, l - 4   # segment 1 = [0, cut), segment 2 = [cut, end), then padding
  for seg, (lo, hi) in enumerate(((0, cut), (cut, end)), start=1):
    segment_ids[:, lo:hi] = seg
    positions[:, lo:hi] = np.arange(hi - lo)
    targets[:, lo:hi - 1] = ids[:, lo + 1:hi]
    loss_mask[:, (lo + hi) // 2:hi - 1] = 1.0
    task_ids[:, lo:hi] = (np.arange(b)[:, None] + seg) % 2
  ids[:, end:] = 0
  images = np.zeros((b, cfg.max_images, v.image_size, v.image_size, 3), np.float32)
  images[:, 0] = rs.randn(b, v.image_size, v.image_size, 3)
  return {"input_ids": ids, "images": images, "segment_ids": segment_ids, "positions": positions,
          "targets": targets, "loss_mask": loss_mask, "task_ids": task_ids}


def built_corpus(root) -> str:
  """A small generated corpus built to ArrayRecord under `root`; returns the data dir."""
  import os

  from data_pipeline import commands
  from data_pipeline.sources import behavior_world
  counts = {("cbc", "train"): 40, ("cbc", "test"): 8, ("blift", "train"): 4, ("blift", "test"): 2,
            ("tweets", "train"): 80, ("tweets", "test_time"): 16, ("tweets", "test_brand"): 4}
  corpus, data = os.path.join(root, "corpus"), os.path.join(root, "data")
  behavior_world.generate(corpus, seed=0, progress=False, counts=counts)
  commands.build_corpus("behavior_world", corpus, data)
  return data
