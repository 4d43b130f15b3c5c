"""`lcbm bench data`: samples/s of the full input pipeline (read, verbalize, tokenize, decode + resize
images, pack, batch) for several Grain worker counts, measured side by side on the same data.

  lcbm bench data                         # generates and builds a small corpus in a temp dir first
  lcbm bench data --data DIR --workers 0 2 --batches 20

The first batch of each run (worker start-up) is not timed. Ratios are against the first worker
count given.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Sequence

from data_pipeline import commands, pipeline, verbalize, vocab, world
from lcbm_jax.errors import UserError


def run(data_dir: str, tokenizer_dir: str, workers: list[int], batches: int, *, image_mean: Sequence[float],
        image_std: Sequence[float], image_size: int = 224, batch_size: int = 8, seq_len: int = 1024) -> list[dict]:
  """One measurement per worker count: {"workers", "samples", "seconds", "samples_per_s", "batches"}.

  image_mean / image_std: the model's image normalisation (RGB), as training would use it.
  """
  results = []
  for w in workers:
    cfg = pipeline.PipelineConfig(
        data_dir=data_dir, tokenizer=tokenizer_dir, tasks=tuple((t, 1.0) for t in verbalize.TASKS),
        seq_len=seq_len, batch_size=batch_size, image_size=image_size, image_mean=tuple(image_mean),
        image_std=tuple(image_std), max_images=4, num_image_tokens=16, num_epochs=None, worker_count=w, seed=0)
    it = pipeline.make_iterator(cfg)
    next(it)   # start-up (worker processes, file handles) is not throughput
    samples, t0 = 0, time.perf_counter()
    for _ in range(batches):
      samples += int((next(it)["sample_ids"] >= 0).sum())
    seconds = time.perf_counter() - t0
    results.append({"workers": w, "samples": samples, "batches": batches, "seconds": seconds,
                    "samples_per_s": samples / seconds})
    it.close()
  return results


def format_results(results: list[dict], image_size: int) -> str:
  base = results[0]["samples_per_s"]
  lines = [f"full pipeline with {image_size}x{image_size} images (read, verbalize, tokenize, decode+resize, "
           "pack, batch)", f"{'workers':>8}  {'samples/s':>10}  {'ratio':>6}  {'samples':>8}  {'seconds':>8}"]
  for r in results:
    lines.append(f"{r['workers']:>8}  {r['samples_per_s']:>10.1f}  {r['samples_per_s'] / base:>5.2f}x  "
                 f"{r['samples']:>8}  {r['seconds']:>8.2f}")
  return "\n".join(lines)


def bench(data_dir: str | None, workers: Sequence[int], batches: int, *, image_mean: Sequence[float],
          image_std: Sequence[float], image_size: int = 224) -> list[dict]:
  """`run` on `data_dir` (default: a small corpus generated and built in a temporary directory), with a
  tokenizer trained on its train split."""
  if not workers or min(workers) < 0 or batches < 1:
    raise UserError("--workers needs counts >= 0 and --batches >= 1")
  with tempfile.TemporaryDirectory(prefix="lcbm-bench-data-") as tmp:
    if data_dir is None:
      gen = os.path.join(tmp, "gen")
      print(f"generating and building a small corpus in {tmp}", file=sys.stderr)
      world.generate(gen, seed=0, size="small")
      data_dir = os.path.join(tmp, "built")
      commands.build_corpus("behavior_world", gen, data_dir)
    tok_dir = os.path.join(tmp, "tok")
    vocab.train_corpus_tokenizer(pipeline.Corpus(data_dir, "train"), verbalize.TASKS,
                                 vocab_size=vocab.QUICK_VOCAB_SIZE, max_images=4, seed=0, out_dir=tok_dir)
    return run(data_dir, tok_dir, list(workers), batches, image_mean=image_mean, image_std=image_std,
               image_size=image_size)
