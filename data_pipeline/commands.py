"""Corpora -> TFDS ArrayRecord (`build_corpus`), and a look at what was built (`inspect_text`): the
library behind `lcbm data build` and `lcbm data inspect` (lcbm_jax/cli/data.py).

  lcbm data generate --out /tmp/bw                                   # the embedded corpus (H3)
  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built   # + its llava/ instruction rows
  lcbm data inspect /tmp/built --seq-len 512
  lcbm data build --source behavior_world --input gs://B/bw --out gs://B/built --beam \
      --beam-options="--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing"
"""
from __future__ import annotations

import collections
import json
import os
from typing import Any, Iterable

import numpy as np

from data_pipeline import pipeline, records, sources, verbalize, vocab
from data_pipeline.sources import behavior_world
from data_pipeline.tfds_builders import builder as builder_lib
from data_pipeline import tokenizer as tokenizer_lib
from lcbm_jax import paths
from lcbm_jax.errors import UserError


def build_corpus(source: str, input_path: str, out_dir: str, media_root=None, *,
                 max_text_chars: int = builder_lib.MAX_TEXT_CHARS, beam_options: str | None = None
                 ) -> list[dict[str, Any]]:
  """Builds `input_path` into `out_dir`; returns one quarantine report per built dataset.

  `media_root`: None (next to the input), a directory, or a list of them (`records.MediaRoots.of`).
  Any of the paths may be gs://. `beam_options`: build on Apache Beam, with these pipeline options
  ("" = Beam's defaults; e.g. "--runner=DirectRunner --direct_num_workers=2
  --direct_running_mode=multi_processing"): the same records, bytes and reports.

  `source="behavior_world"` builds every sub-corpus a generated directory lists (cbc, blift, tweets,
  and llava_json: its instruction rows).
  """
  if not paths.exists(input_path):
    raise UserError(f"--input {input_path} does not exist")
  media_root = records.MediaRoots.of(media_root)
  for root in ([] if media_root is None else [media_root.root, *media_root.extra]
               if isinstance(media_root, records.MediaRoots) else [media_root]):
    if not paths.isdir(root):
      raise UserError(f"--media-root {root} is not a directory")
  if source == "behavior_world":
    by_source: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for entry in behavior_world.entries(input_path, media_root):
      if not entry.count:   # TFDS cannot write an empty split
        continue
      by_source[entry.source][entry.split] = builder_lib.SplitInput(
          lambda s=entry.source, f=entry.file, r=entry.media_root: sources.read(s, f, r), entry.media_root)
    plan = [(builder_lib.builder_class(s), splits, f"{input_path} ({s})") for s, splits in by_source.items()]
  else:
    cls = builder_lib.builder_class(source)
    plan = [(cls, builder_lib.input_splits(cls, input_path, media_root), input_path)]
  beam = None if beam_options is None else _beam(beam_options)
  reports = []
  for cls, splits, desc in plan:
    builder, report = builder_lib.build(cls, splits, out_dir, desc, max_text_chars, beam)
    report["path"] = builder.data_dir
    reports.append(report)
  return reports


def _beam(options: str):
  try:
    from data_pipeline.tfds_builders import beam_build   # here: apache-beam is an optional extra
  except ImportError as e:
    if not (e.name or "").startswith("apache_beam"):
      raise
    raise UserError("--beam needs Apache Beam: pip install 'lcbm-jax[beam]' (or pip install apache-beam)") from None
  return beam_build.Beam(beam_build.pipeline_options(options))


def format_report(report: dict[str, Any]) -> str:
  """One `build_corpus` report as text: records and quarantined per split, the reasons, the report file."""
  lines = [f"\n== {report['dataset']}  ({report['path']})"]
  for split, c in report["splits"].items():
    lines.append(f"  {split:12s} {c['records']:7d} records  {c['quarantined']:5d} quarantined")
  lines.append(_indent(builder_lib.format_quarantine_table(report["reasons"])))
  long = report.get("long_text", {})
  if any(long.get("splits", {}).values()):
    counts = ", ".join(f"{s} {n}" for s, n in long["splits"].items())
    lines.append(f"  long text: records over {long['limit_chars']} characters (built; may exceed data.seq_len): "
                 f"{counts}; e.g. {', '.join(long['examples'][:3])}")
  lines.append(f"  report: {os.path.join(report['path'], builder_lib.QUARANTINE_FILE)}")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# inspect

def is_built(d: str) -> bool:
  """Whether `d` holds at least one built dataset (else it may be a generated corpus to build first)."""
  try:
    builder_lib.find_datasets(d)
  except UserError:
    return False
  return True


def inspect_text(data_dir: str, *, tokenizer: str | None = None, seq_len: int = 512, num_image_tokens: int = 16,
                 max_images: int = 4, batch_size: int = 1, images_per_batch: int = 0, png: str | None = None) -> str:
  """The inspect report as text (counts, samples per task, token lengths, quarantine, packing against
  the two budgets: tokens per row, images per batch of `batch_size` rows)."""
  out: list[str] = []
  datasets = builder_lib.find_datasets(data_dir)
  reports, split_counts = [], collections.defaultdict(dict)
  for d in datasets:
    info = builder_lib.read_dataset_info(d)
    split_counts[info.name].update(info.split_counts)
    q_path = os.path.join(d, builder_lib.QUARANTINE_FILE)
    if os.path.exists(q_path):
      with open(q_path) as f:
        reports.append(json.load(f))

  out.append(f"== records per split and source ({data_dir})")
  splits = sorted({s for c in split_counts.values() for s in c})
  out.append(_table([["source", *splits, "quarantined"]] + [
      [name, *[str(c.get(s, "-")) for s in splits],
       str(sum(len(r["items"]) for r in reports if r["dataset"] == name))]
      for name, c in sorted(split_counts.items())]))

  split = "train" if "train" in splits else splits[0]
  corpus = pipeline.Corpus(data_dir, split)
  tok = tokenizer_lib.load(tokenizer) if tokenizer else vocab.train_corpus_tokenizer(
      corpus, verbalize.TASKS, vocab_size=vocab.QUICK_VOCAB_SIZE, max_images=max_images, seed=0)
  out.append(f"\n== one verbalized sample per task ({split} split)")
  out.extend(_task_samples(corpus, max_images))

  config = pipeline.PipelineConfig(
      data_dir=data_dir, tokenizer="", split=split, tasks=tuple((t, 1.0) for t in verbalize.TASKS),
      seq_len=seq_len, batch_size=batch_size, max_images=max_images, num_image_tokens=num_image_tokens,
      images_per_batch=images_per_batch)
  config.validate()
  lengths, packer, groups, tokens, images = [], pipeline.packer(config), 0, 0, 0
  late_quarantine: collections.Counter = collections.Counter()
  for elem in pipeline.text_only_epoch(config, corpus, tok, 0, 0):
    if elem["quarantine"]:
      late_quarantine[elem["quarantine"]] += 1
      continue
    lengths.append(len(elem["tokens"]))
    tokens += len(elem["tokens"])
    images += elem["n_images"]
    groups += packer.add(elem) is not None
  groups += packer.flush() is not None
  rows = groups * config.rows_per_group
  out.append(f"\n== token lengths ({split}, all tasks, {num_image_tokens} ids per image, "
             f"tokenizer {'given' if tokenizer else 'trained on this corpus'})")
  out.append(_histogram(lengths))
  if png:
    _histogram_png(lengths, png)
    out.append(f"histogram PNG: {png}")

  out.append("\n== quarantine (build time, all splits)")
  merged: dict[str, dict[str, Any]] = {}
  for r in reports:
    for reason, entry in r["reasons"].items():
      m = merged.setdefault(reason, {"count": 0, "examples": []})
      m["count"] += entry["count"]
      m["examples"].extend(entry["examples"])
  out.append(builder_lib.format_quarantine_table(merged))
  if late_quarantine:
    out.append(f"at pipeline time ({split}, seq_len {seq_len}): " +
               ", ".join(f"{k}={v}" for k, v in sorted(late_quarantine.items())))

  n = len(lengths)
  out.append(f"\n== packing (seq_len {seq_len}, {split})")
  if n:
    out.append(f"packed: {n} samples -> {rows} rows, efficiency {tokens / (rows * seq_len):.1%} "
               f"(real tokens / slots), {n / rows:.2f} samples per row")
    out.append(f"padded (one sample per row): efficiency {tokens / (n * seq_len):.1%}")
    budget = config.image_budget
    if budget:
      out.append(f"image budget: {budget} images per batch of {batch_size} rows -> {groups} batches, "
                 f"fill {images / (groups * budget):.1%} ({images} images in {groups * budget} slots)")
  return "\n".join(out)


def _task_samples(corpus: pipeline.Corpus, max_images: int) -> list[str]:
  out, todo = [], list(verbalize.TASKS)
  for i in range(len(corpus)):
    if not todo:
      break
    record = corpus[i]
    for task in list(todo):
      if verbalize.applies(record, task, corpus.context):
        v = verbalize.verbalize(record, task, rng=np.random.default_rng(i), max_images=max_images,
                                context=corpus.context)
        out.append(f"--- {task} ({v.template_version}; record {record.record_id}, {len(v.media)} images)")
        out.append(_indent("PROMPT: " + _clip(v.prompt)))
        out.append(_indent("TARGET: " + _clip(v.target)))
        todo.remove(task)
  out.extend(f"--- {task}: no record in this split supports it" for task in todo)
  return out


def _clip(text: str, limit: int = 600) -> str:
  return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more chars]"


def _histogram(values: Iterable[int], bins: int = 12, width: int = 40) -> str:
  values = np.asarray(list(values))
  if not len(values):
    return "(no samples)"
  counts, edges = np.histogram(values, bins=bins)
  lines = [f"n={len(values)} min={values.min()} median={int(np.median(values))} p95={int(np.percentile(values, 95))} "
           f"max={values.max()}"]
  for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
    lines.append(f"{int(lo):6d}-{int(hi):<6d} {'#' * int(round(width * c / counts.max())):<{width}} {c}")
  return "\n".join(lines)


def _histogram_png(values: list[int], path: str) -> None:
  # matplotlib is slow to import, and only `--png` draws.
  import matplotlib
  matplotlib.use("Agg")   # no display; must precede the pyplot import
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.hist(values, bins=30)
  ax.set_xlabel("tokens per sample")
  ax.set_ylabel("samples")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _table(rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)


def _indent(text: str) -> str:
  return "\n".join("  " + line for line in text.splitlines())
