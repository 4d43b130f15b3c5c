"""Shared by the data tests: a tiny generated corpus built to ArrayRecord, and a tokenizer trained on it."""
from __future__ import annotations

import os

from data_pipeline import commands, pipeline, verbalize, vocab, world
from lcbm_jax.model.presets import CLIP_MEAN, CLIP_STD

TINY_COUNTS = {("cbc", "train"): 10, ("cbc", "test"): 4, ("blift", "train"): 10, ("blift", "test"): 0,
               ("tweets", "train"): 20, ("tweets", "test_time"): 0, ("tweets", "test_brand"): 0}
ALL_TASKS = tuple((t, 1.0) for t in verbalize.TASKS)


def build_tiny(root: str, counts=None) -> tuple[str, str]:
  """Generates and builds a tiny corpus under root; returns (data_dir, tokenizer_dir)."""
  gen, data_dir = os.path.join(root, "gen"), os.path.join(root, "built")
  world.generate(gen, seed=0, counts=counts or TINY_COUNTS, progress=False)
  commands.build_corpus("behavior_world", gen, data_dir)
  return data_dir, train_tokenizer(data_dir, os.path.join(root, "tok"))


def train_tokenizer(data_dir: str, out_dir: str, vocab_size: int = 500) -> str:
  vocab.train_corpus_tokenizer(pipeline.Corpus(data_dir, "train"), verbalize.TASKS, vocab_size=vocab_size,
                               max_images=4, seed=0, out_dir=out_dir)
  return out_dir


def config(data_dir: str, tok_dir: str, **overrides) -> pipeline.PipelineConfig:
  base = dict(data_dir=data_dir, tokenizer=tok_dir, tasks=ALL_TASKS, seq_len=512, batch_size=4, image_size=32,
              image_mean=CLIP_MEAN, image_std=CLIP_STD, max_images=4, num_image_tokens=16, seed=3)
  base.update(overrides)
  return pipeline.PipelineConfig(**base)
