"""`lcbm bench data`: samples/s of the full input pipeline (read, verbalize, tokenize, decode + resize
images, pack, batch) for several Grain worker counts, measured side by side on the same data; and
`--build`: records/s of `lcbm data build`, single process and on Beam's DirectRunner, side by side.

  lcbm bench data                         # generates and builds a small corpus in a temp dir first
  lcbm bench data --data DIR --workers 0 2 --batches 20
  lcbm bench data --build --media-size 512 --beam-workers 2

The first batch of each run (worker start-up) is not timed. Ratios are against the first worker
count given. A build is timed whole (a Beam build's pipeline and worker start-up included).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Sequence

from data_pipeline import commands, pipeline, verbalize, vocab, world
from data_pipeline.sources import behavior_world
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


# ---------------------------------------------------------------------------------------------
# --build

BLIFT_ITEMS = 730_000   # BLIFT's posts and videos (PAPERS.md): the corpus the projection is for


def beam_direct_options(workers: int) -> str:
  return f"--runner=DirectRunner --direct_num_workers={workers} --direct_running_mode=multi_processing"


def build_bench(corpus: str | None, *, media_size: int = 512, size: str = "small", beam_workers: int = 2) -> dict:
  """Builds one generated corpus (default: `size` with `media_size`-pixel media, generated in a temp dir)
  single-process and on the DirectRunner with `beam_workers` processes; the two record counts must agree."""
  if beam_workers < 1:
    raise UserError("--beam-workers must be >= 1")
  with tempfile.TemporaryDirectory(prefix="lcbm-bench-build-") as tmp:
    generated_s = None
    if corpus is None:
      corpus = os.path.join(tmp, "gen")
      print(f"generating a {size} corpus with {media_size}x{media_size} media in {tmp}", file=sys.stderr)
      t0 = time.perf_counter()
      world.generate(corpus, seed=0, size=size, media_size=media_size, progress=False)
      generated_s = time.perf_counter() - t0
    media_size = behavior_world.load_manifest(corpus).get("image_size", media_size)
    media_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(corpus) for f in files)
    runs = []
    for name, workers, options in (("single process", 1, None),
                                   ("Beam DirectRunner, multi_processing", beam_workers, beam_direct_options(beam_workers))):
      out = os.path.join(tmp, "built")
      load = os.getloadavg()[0]
      t0 = time.perf_counter()
      reports = commands.build_corpus("behavior_world", corpus, out, beam_options=options)
      seconds = time.perf_counter() - t0
      shutil.rmtree(out)
      records = sum(c["records"] for r in reports for c in r["splits"].values())
      runs.append({"build": name, "workers": workers, "records": records, "seconds": seconds,
                   "records_per_s": records / seconds, "per_worker": records / seconds / workers,
                   "load_before": load})
    if runs[0]["records"] != runs[1]["records"]:
      raise AssertionError(f"the builds disagree: {runs[0]['records']} vs {runs[1]['records']} records")
    return {"corpus": corpus if generated_s is None else f"generated {size}", "media_size": media_size,
            "corpus_bytes": media_bytes, "generated_s": generated_s, "cpus": os.cpu_count(), "runs": runs}


def format_build_results(result: dict) -> str:
  runs, base = result["runs"], result["runs"][0]["records_per_s"]
  lines = [f"lcbm data build of a behavior_world corpus ({result['corpus']}, {result['media_size']}x"
           f"{result['media_size']} media, {result['corpus_bytes'] / 2**20:.0f} MiB on disk) on {result['cpus']} CPUs",
           f"{'build':38s} {'workers':>7}  {'records':>7}  {'seconds':>7}  {'records/s':>9}  {'per worker':>10}  "
           f"{'ratio':>6}  {'load':>5}"]
  for r in runs:
    lines.append(f"{r['build']:38s} {r['workers']:>7}  {r['records']:>7}  {r['seconds']:>7.1f}  "
                 f"{r['records_per_s']:>9.1f}  {r['per_worker']:>10.1f}  {r['records_per_s'] / base:>5.2f}x  "
                 f"{r['load_before']:>5.1f}")
  single, beam = runs
  lines.append(f"BLIFT-size corpus ({BLIFT_ITEMS:,} items) at these rates: single process "
               f"{BLIFT_ITEMS / single['records_per_s'] / 3600:.1f} h; Beam "
               f"{BLIFT_ITEMS / beam['per_worker'] / 3600:.1f} worker-hours "
               f"({BLIFT_ITEMS / beam['per_worker'] / 3600 / 16:.1f} h on 16 workers, if it scales with workers)")
  return "\n".join(lines)
