"""The TFDS builder every corpus shares: validated records -> ArrayRecord shards, no TensorFlow needed.

Each source has its own folder (`cbc/`, `blift/`, `tweets/`, `jsonl/`, `llava_json/`) with a thin
subclass that names the reader; this module holds what they share:

- features: the record as JSON text (`ContentBehaviorRecord.to_dict`), and its media as encoded
  bytes (`Tensor(shape=(), dtype=object)`, one per `content.media` entry, in order). No
  `tfds.features.Image`: that path needs TensorFlow, and the pipeline decodes with Pillow anyway.
- `file_format="array_record"`: random access for Grain (`tfds.builder_from_directory(...)
  .as_data_source(split)`), written and read without TensorFlow.
- quarantine: every `Quarantined` item the reader yields (and any media that cannot be read now) is
  collected per split and written as `quarantine.json` next to the shards, with a table printed.
- `context.json`: the corpus-level inputs templates need (per-account like percentiles, the ASR
  distractor pool), fitted on the train split only, so evaluation never sees test behavior.

Layout of a built data dir: `OUT/<source>/1.0.0/{*.array_record-*, dataset_info.json,
quarantine.json, context.json}`; several sources may share one OUT (the pipeline reads them all).
Inputs and OUT may be gs:// (`lcbm_jax.paths`); `beam_build.py` builds the same on Apache Beam.
"""
from __future__ import annotations

import collections
import dataclasses
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core import splits as splits_lib
from tensorflow_datasets.core import writer as writer_lib
import tqdm
from etils import epath

from data_pipeline import records as records_lib
from data_pipeline import verbalize
from lcbm_jax import paths
from lcbm_jax.errors import UserError

INFO_FILE = "dataset_info.json"   # written by TFDS
QUARANTINE_FILE = "quarantine.json"
CONTEXT_FILE = "context.json"
_EXAMPLES_PER_REASON = 5
# Records with more text than this are built (a template may use only part of it) but counted in the
# report, so a corpus that will not fit `data.seq_len` shows at build time, not as `too_long` in training.
MAX_TEXT_CHARS = 16384

Item = records_lib.ContentBehaviorRecord | records_lib.Quarantined


class SplitInput(NamedTuple):
  read: Callable[[], Iterable[Item]]   # yields the split's records / Quarantined items
  media_root: str | None               # where the records' relative media paths resolve


class NoCleanRecord(Exception):
  """No split of the input has a single clean record (nothing to write)."""


class CorpusBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds one corpus; `splits` maps a split name to its `SplitInput`."""

  SOURCE = ""        # module name under data_pipeline/sources/ whose `read` parses the input
  FILE_SUFFIX: str | tuple[str, ...] = ""   # input file suffix(es) when --input is a directory of split files
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Records as JSON text, media as encoded bytes."}

  def __init__(self, *, splits: Mapping[str, SplitInput] | None = None, max_text_chars: int = MAX_TEXT_CHARS,
               beam: Any = None, **kwargs):
    self._splits = dict(splits or {})
    self._beam = beam   # beam_build.Beam: build the splits in a Beam pipeline
    self.max_text_chars = max_text_chars
    self.long_text: dict[str, list[str]] = collections.defaultdict(list)   # split -> record ids over the limit
    self.quarantined: dict[str, list[records_lib.Quarantined]] = collections.defaultdict(list)
    self.kept: dict[str, int] = collections.Counter()
    self._seen: dict[str, tuple[str, str]] = {}   # record id -> (split, row) of the row built with it
    self.empty_splits: set[str] = set()   # splits read to the end without one clean record: left out
    self._train_records: list[records_lib.ContentBehaviorRecord] = []
    # Test splits may hold accounts training never saw (LCBM's brand split): their like levels
    # come from their own records (`Context.fit(unseen=...)`), never from the training accounts.
    self._other_records: list[records_lib.ContentBehaviorRecord] = []
    self.context_json: dict[str, Any] | None = None   # the Beam build fits the context in the pipeline
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the `importlib_resources` backport for package modules; the file is enough.
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "record_id": tfds.features.Text(),
            "source": tfds.features.Text(),
            "record": tfds.features.Text(),   # ContentBehaviorRecord.to_dict() as JSON
            "media": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
        }),
        disable_shuffling=True,   # keep corpus order; the Grain pipeline shuffles per epoch
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # corpora are local files; nothing to download
    if not self._splits:
      raise UserError(f"{self.name}: no input splits given; pass --input")
    return {split: self._generate_examples(split) for split in self._splits}

  def _generate_examples(self, split: str):
    read, _ = self._splits[split]
    self._seen = {k: v for k, v in self._seen.items() if v[0] != split}   # a split generated again starts over
    for i, item in enumerate(tqdm.tqdm(read(), desc=f"{self.name}/{split}", unit=" records", file=sys.stderr,
                                       leave=False)):
      if isinstance(item, records_lib.Quarantined):
        self.quarantined[split].append(item)
        continue
      first = self._seen.get(item.record_id)
      if first is not None:   # the first row with an id, in (split, file, row) order, is the one built
        self.quarantined[split].append(duplicate(item, first, split, i))
        continue
      ex = example(item, self.name)
      if text_chars(item) > self.max_text_chars:
        self.long_text[split].append(item.record_id)
      self._seen[item.record_id] = (split, f"#{i}")
      self.kept[split] += 1
      # Kept for fitting the context: without the media bytes, which are written below and dropped.
      (self._train_records if split == "train" else self._other_records).append(_without_media_bytes(item))
      # Key = position in the corpus: unique even when a corpus repeats a record id.
      yield i, ex

  def _example_writer(self):
    return _StagedExampleWriter(file_format=self.info.file_format)

  def _generate_splits(self, dl_manager, download_config):
    """TFDS's split loop (`SplitBuilder._build_from_generator`), except that a split with no clean
    record is left out, not fatal, and records are serialized with `DeterministicSerializer`.

    TFDS's own loop fails the whole build on an empty split ("No examples were yielded"), so the
    build would have to start over and read every split again; here each split is read once.
    On Beam (`lcbm data build --beam`: `build(beam=...)`) the splits are built in one pipeline instead.
    """
    if self._beam is not None:
      return self._beam.generate_splits(self, download_config)
    serializer = DeterministicSerializer(self.info.features.get_serialized_info())
    infos = []
    for split, generator in self._split_generators(dl_manager).items():
      template = self._get_filename_template(split_name=split)
      writer = writer_lib.Writer(serializer=serializer, filename_template=template, hash_salt=split,
                                 disable_shuffling=self.info.disable_shuffling,
                                 shard_config=download_config.get_shard_config(),
                                 example_writer=self._example_writer())
      for key, ex in generator:
        writer.write(key, self.info.features.encode_example(ex))
      if not self.kept.get(split):
        self.empty_splits.add(split)
        continue
      lengths, size = writer.finalize()
      infos.append(splits_lib.SplitInfo(name=split, shard_lengths=lengths, num_bytes=size, filename_template=template))
    if not infos:
      raise NoCleanRecord()
    return infos

  def write_reports(self, input_desc: str) -> dict[str, Any]:
    """Writes quarantine.json and context.json into the built version directory; returns the report."""
    report = quarantine_report(self.name, input_desc, self.kept, self.quarantined)
    report["long_text"] = {"limit_chars": self.max_text_chars,
                           "splits": {split: len(ids) for split, ids in sorted(self.long_text.items())},
                           "examples": [i for _, ids in sorted(self.long_text.items()) for i in ids][:_EXAMPLES_PER_REASON]}
    _write_json(os.path.join(self.data_dir, QUARANTINE_FILE), report)
    context = self.context_json if self.context_json is not None else context_to_json(
        verbalize.Context.fit(self._train_records, unseen=self._other_records))
    _write_json(os.path.join(self.data_dir, CONTEXT_FILE), context)
    return report


def text_chars(record: records_lib.ContentBehaviorRecord) -> int:
  """Characters of text a record can put into a sample (content, scenes, comments, conversation)."""
  c = record.content
  return (len(c.title) + len(c.description) + len(c.text) + sum(len(t) for t in c.keywords)
          + sum(len(s.asr) + len(s.ocr) + sum(len(t) for t in s.captions) for s in c.scenes)
          + sum(len(t) for t in record.behavior.comments) + sum(len(t) for _, t in c.conversation))


def example(item: records_lib.ContentBehaviorRecord, dataset: str) -> dict[str, Any]:
  """The example a clean record becomes: its JSON and its media bytes (the Beam build shares it)."""
  if any(m.data is None for m in item.content.media):   # readers yield validated records, bytes loaded
    raise TypeError(f"{dataset}: record {item.record_id!r} came without its media bytes; readers "
                    "must yield records.validate(...) results")
  return {"record_id": item.record_id, "source": item.source,
          "record": json.dumps(item.to_dict(), ensure_ascii=False), "media": [m.data for m in item.content.media]}


def duplicate(item: records_lib.ContentBehaviorRecord, first: tuple[str, str], split: str,
              row: int) -> records_lib.Quarantined:
  """Row `row` of `split` repeats the id first built from `first` = (split, "#row")."""
  where = "this split" if first[0] == split else f"split {first[0]} (train/test leakage)"
  return records_lib.quarantine(records_lib.RecordError(
      "duplicate_id", f"{item.record_id!r} was built from {where}, row {first[1]}"),
      item.record_id, item.source, f"#{row}")


class DeterministicSerializer(example_serializer.ExampleSerializer):
  """TFDS's serializer, with the feature map written in key order. Protobuf writes a map in the order
  of its hash table, seeded anew in every process, so without this the same record had other bytes
  in every build (and on every Beam worker)."""

  def serialize_example(self, example):
    return self.get_tf_example(example).SerializeToString(deterministic=True)


class _StagedExampleWriter(writer_lib.ExampleWriter):
  """TFDS's writer of ArrayRecord shards (its injection point for custom storage). array_record writes
  local files only: a shard bound for an object store (gs://) is written to a local temporary file
  and copied up as one object."""

  def write(self, path, examples):
    if not paths.is_remote(os.fspath(path)):
      return super().write(path, examples)
    with tempfile.TemporaryDirectory(prefix="lcbm-shard-") as tmp:
      local = os.path.join(tmp, epath.Path(path).name)
      positions = super().write(local, examples)
      with open(local, "rb") as src, epath.Path(path).open("wb") as dst:
        shutil.copyfileobj(src, dst, 16 << 20)
    return positions


def _without_media_bytes(record: records_lib.ContentBehaviorRecord) -> records_lib.ContentBehaviorRecord:
  media = tuple(dataclasses.replace(m, data=None) for m in record.content.media)
  return dataclasses.replace(record, content=dataclasses.replace(record.content, media=media))


def quarantine_report(name: str, input_desc: str, kept: Mapping[str, int],
                      quarantined: Mapping[str, list[records_lib.Quarantined]]) -> dict[str, Any]:
  reasons: dict[str, dict[str, Any]] = {}
  for split, items in quarantined.items():
    for q in items:
      entry = reasons.setdefault(q.reason, {"count": 0, "examples": []})
      entry["count"] += 1
      if len(entry["examples"]) < _EXAMPLES_PER_REASON:
        entry["examples"].append({"split": split, "record_id": q.record_id, "location": q.location,
                                  "detail": q.detail})
  splits = sorted(set(kept) | set(quarantined))
  return {
      "dataset": name, "input": input_desc,
      "splits": {s: {"records": int(kept.get(s, 0)), "quarantined": len(quarantined.get(s, ()))} for s in splits},
      "reasons": dict(sorted(reasons.items())),
      "items": [{"split": s, "record_id": q.record_id, "reason": q.reason, "location": q.location,
                 "detail": q.detail} for s in splits for q in quarantined.get(s, ())],
  }


def format_quarantine_table(reasons: Mapping[str, Mapping[str, Any]]) -> str:
  """The quarantine table as text: reason, count, example locations."""
  if not reasons:
    return "quarantine: none"
  rows = [("reason", "count", "example locations")]
  for reason, entry in sorted(reasons.items(), key=lambda kv: -kv[1]["count"]):
    where = ", ".join(e["location"] or e["record_id"] for e in entry["examples"][:3])
    rows.append((reason, str(entry["count"]), where))
  w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
  return "\n".join(f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows)


def context_to_json(ctx: verbalize.Context) -> dict[str, Any]:
  levels = ctx.like_levels.thresholds if ctx.like_levels else {}
  out = {"like_levels": {a: list(t) for a, t in sorted(levels.items())}, "asr_pool": list(ctx.asr_pool)}
  if ctx.blift_behavior_units:   # [is a video, scenes, mean text units, records] per kind
    out["blift_behavior_units"] = [[v, n, m, c] for (v, n), (m, c) in sorted(ctx.blift_behavior_units.items())]
  return out


def context_from_json(objs: Iterable[Mapping[str, Any]]) -> verbalize.Context:
  """Merges the contexts of several built corpora (accounts and ASR texts do not overlap in meaning)."""
  levels: dict[str, tuple[float, float]] = {}
  pool: set[str] = set()
  chars: dict[tuple[bool, int], tuple[float, int]] = {}
  for obj in objs:
    levels.update({a: tuple(t) for a, t in obj.get("like_levels", {}).items()})
    pool.update(obj.get("asr_pool", ()))
    for video, n, mean, count in obj.get("blift_behavior_units", ()):
      m0, c0 = chars.get((bool(video), int(n)), (0.0, 0))   # two corpora's records of one kind: pooled
      chars[(bool(video), int(n))] = ((m0 * c0 + mean * count) / (c0 + count), c0 + count)
  return verbalize.Context(like_levels=verbalize.LikeLevels(levels), asr_pool=tuple(sorted(pool)),
                           blift_behavior_units=chars or None)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the pipeline and `lcbm data inspect` read from a built corpus's dataset_info.json."""
  name: str                      # the builder's name (cbc, blift, ...)
  split_counts: dict[str, int]   # split -> records


def read_dataset_info(dataset_dir: str) -> DatasetInfo:
  """The name and per-split record counts of the built corpus in `dataset_dir` (a version directory)."""
  with open(os.path.join(dataset_dir, INFO_FILE)) as f:
    info = json.load(f)
  counts = {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in info.get("splits", [])}
  return DatasetInfo(info["name"], counts)


def find_datasets(data_dir: str) -> list[str]:
  """Version directories of every built corpus under `data_dir` (or `data_dir` itself if it is one)."""
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise UserError(f"data dir {data_dir} does not exist; build one with `lcbm data build`")
  if os.path.exists(os.path.join(data_dir, INFO_FILE)):
    return [data_dir]
  found = []
  for root, dirs, files in os.walk(data_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith(("incomplete.", "downloads", ".")))
    if INFO_FILE in files:
      found.append(root)
      dirs[:] = []
  if not found:
    raise UserError(f"no built corpus under {data_dir}; run `lcbm data build --source ... --out {data_dir}`")
  return found


def builder_class(source: str) -> type[CorpusBuilder]:
  """The builder class of a source name (its own folder: tfds_builders/<source>/<source>.py)."""
  try:
    module = importlib.import_module(f"data_pipeline.tfds_builders.{source}.{source}")
  except ModuleNotFoundError:
    raise UserError(f"no TFDS builder for source {source!r}") from None
  (cls,) = [v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, CorpusBuilder) and v is not CorpusBuilder]
  return cls


def input_splits(builder_cls: type[CorpusBuilder], input_path: str,
                 media_root: str | None) -> dict[str, SplitInput]:
  """Split name -> item reader. A directory gives one split per `<split><suffix>` file in it; a file
  gives the split its name says (train, test, test_time, ...) or `train`."""
  suffixes = builder_cls.FILE_SUFFIX if isinstance(builder_cls.FILE_SUFFIX, tuple) else (builder_cls.FILE_SUFFIX,)
  if paths.isdir(input_path):
    files = sorted(paths.join(input_path, f) for f in paths.listdir(input_path) if f.endswith(suffixes))
    if not files:
      raise UserError(f"{input_path} holds no {' or '.join('*' + x for x in suffixes)} files for source "
                      f"{builder_cls.SOURCE}")
  elif paths.isfile(input_path):
    files = [input_path]
  else:
    raise UserError(f"--input {input_path} does not exist")
  read = importlib.import_module(f"data_pipeline.sources.{builder_cls.SOURCE}").read
  splits = {}
  for file in files:
    suffix = next((x for x in suffixes if file.endswith(x)), None)
    stem = os.path.basename(file)[:-len(suffix)] if suffix else ""
    split = stem if re.fullmatch(r"(train|validation|test)(_\w+)?", stem) else "train"
    if len(files) > 1 and split == "train" and stem != "train":
      raise UserError(f"{file}: cannot tell its split; name split files train{suffixes[0]}, "
                      f"test{suffixes[0]}, ...")
    if split in splits:
      raise UserError(f"two input files for split {split!r} in {input_path}")
    root = media_root or records_lib.ImplicitRoot(paths.dirname(paths.abspath(file)))
    splits[split] = SplitInput(lambda file=file, root=root: read(file, root), root)
  return splits


def build(builder_cls: type[CorpusBuilder], splits: Mapping[str, SplitInput], out_dir: str,
          input_desc: str, max_text_chars: int = MAX_TEXT_CHARS, beam: Any = None
          ) -> tuple[CorpusBuilder, dict[str, Any]]:
  """Builds (or rebuilds) one corpus into `out_dir/<name>/<version>` and writes its reports.

  A split without a single clean record is left out (TFDS cannot write an empty split); its
  quarantined items still go into the report. Every split is read exactly once. `beam`
  (`beam_build.Beam`): build in a Beam pipeline with its options, the same records and report.
  """
  tfds.disable_progress_bar()   # one bar per split of our own instead of TFDS's nested ones
  builder = builder_cls(splits=splits, data_dir=out_dir, max_text_chars=max_text_chars, beam=beam)
  try:
    # FORCE_REDOWNLOAD: `lcbm data build` into an existing dir rebuilds instead of silently reusing.
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD, beam_options=None if beam is None else beam.options))
  except NoCleanRecord:
    report = quarantine_report(builder.name, input_desc, {}, builder.quarantined)
    path = os.path.join(out_dir, builder.name, QUARANTINE_FILE)
    paths.path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, report)
    raise UserError(f"{builder.name}: no split of {input_desc} has a clean record; see {path}") from None
  return builder, builder.write_reports(input_desc)


def _write_json(path: str, obj: Any) -> None:
  if paths.is_remote(path):   # one object write is atomic; a rename on an object store is not
    paths.path(path).write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    return
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, ensure_ascii=False)
  os.replace(path + ".tmp", path)
