"""The Beam build: `CorpusBuilder`'s validation, duplicate rule and quarantine as the stages of one
Apache Beam pipeline per corpus, the shards written by TFDS's own Beam writer (no TensorFlow).

  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built --beam \
      --beam-options="--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing"

Stages, for all splits of a corpus at once:

  Read       one worker per split file: rows parsed and schema-checked, media not opened (`sources.parsed`)
  Spread     rows shuffled over the workers
  Validate   values, text, media read once and fully decoded (the costly part) -> record | Quarantined
  ById       record ids grouped: the first row of an id in (split, row) order is built, every later
             one is `duplicate_id`, as in the single-process build (which reads the splits in order)
  <split>/Write  TFDS's `BeamWriter`: key = row, so records come in the single-process order
  side files quarantined items, long-text ids and the context (fitted on the train split, in the
             pipeline), read back here into the builder in (split, row) order, the single-process
             build's, so it writes the same reports

Why TFDS's writer: TFDS's Beam support writes ArrayRecord without TensorFlow. `SplitBuilder` hands a
PCollection to `writer.BeamWriter`, whose shard writes go through the builder's `ExampleWriter`
(`file_adapters.ArrayRecordFileAdapter.write_examples`: `array_record_module.ArrayRecordWriter`);
the serializer is TFDS's own proto code, with the feature map in key order in both builds
(`builder.DeterministicSerializer`). Its other Beam writer (`NoShuffleBeamWriter`) needs a file
adapter's `beam_sink`, which ArrayRecord lacks. array_record's Beam sink
(`array_record/beam/arrayrecordio.py`) writes local disk only and its GCS DoFn needs
google-cloud-storage: not needed. What TFDS does not do is leave out a split whose rows were all
quarantined (its writer fails the pipeline on zero examples): `_SplitWriter` allows it, and the
split is left out as in the single-process build.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any, Callable, Iterator

import apache_beam as beam
from apache_beam.options import pipeline_options as beam_pipeline_options
from etils import epath
from tensorflow_datasets.core import split_builder as split_builder_lib
from tensorflow_datasets.core import splits as splits_lib
from tensorflow_datasets.core import writer as writer_lib

from data_pipeline import records as records_lib
from data_pipeline import sources, verbalize
from data_pipeline.tfds_builders import builder as builder_lib
from lcbm_jax.errors import UserError

SIDE_DIR = "lcbm-beam"   # in the version dir being built: what the driver reads back, removed after
DUPLICATE = "duplicate"

Row = tuple[int, int, Any]   # (split index, row in its file, item)


@dataclasses.dataclass(frozen=True)
class Beam:
  """What `builder.build(beam=...)` needs: the pipeline options, and the split generation to run."""
  options: beam_pipeline_options.PipelineOptions

  def generate_splits(self, builder: builder_lib.CorpusBuilder, download_config) -> list[splits_lib.SplitInfo]:
    return generate_splits(builder, download_config)


def pipeline_options(text: str) -> beam_pipeline_options.PipelineOptions:
  """`--beam-options` text -> PipelineOptions; an option no Beam component knows is a UserError."""
  options = beam_pipeline_options.PipelineOptions(shlex.split(text))
  unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
  if unknown:
    raise UserError(f"--beam-options: Beam knows no option {', '.join(sorted('--' + u for u in unknown))}")
  return options


def generate_splits(builder: builder_lib.CorpusBuilder, download_config) -> list[splits_lib.SplitInfo]:
  """`CorpusBuilder._generate_splits` on Beam: runs the pipeline, fills the builder's quarantine,
  long-text, kept counts and context as the single-process loop would, returns the non-empty splits."""
  names = list(builder._splits)
  if not names:
    raise UserError(f"{builder.name}: no input splits given; pass --input")
  reads = [builder._splits[n].read for n in names]
  side = epath.Path(builder.data_dir) / SIDE_DIR
  side.mkdir(parents=True, exist_ok=True)
  # TFDS's SplitBuilder makes the pipeline as for any TFDS Beam dataset (these options, type checks off).
  split_builder = split_builder_lib.SplitBuilder(
      split_dict=builder.info.splits, features=builder.info.features, dataset_size=builder.info.dataset_size,
      max_examples_per_split=None, beam_options=download_config.beam_options,
      beam_runner=download_config.beam_runner, shard_config=download_config.get_shard_config(),
      example_writer=builder._example_writer(), ignore_duplicates=False)
  serializer = builder_lib.DeterministicSerializer(builder.info.features.get_serialized_info())
  writers = {}
  with split_builder.maybe_beam_pipeline():
    items = (split_builder.beam_pipeline
             | "Splits" >> beam.Create(range(len(names)))
             | "Read" >> beam.FlatMap(_read_split, reads)
             | "Spread" >> beam.Reshuffle()
             | "Validate" >> beam.Map(_validate))
    clean, bad = items | "Clean" >> beam.Partition(_quarantined_or_not, 2)
    later = (clean
             | "Ids" >> beam.Map(lambda x: (x[2].record_id, (x[0], x[1])))
             | "ById" >> beam.GroupByKey()
             | "LaterRows" >> beam.FlatMap(_later_rows))
    resolved = clean | "Resolve" >> beam.ParDo(_Resolve(names), beam.pvalue.AsDict(later)).with_outputs(
        DUPLICATE, main="kept")
    kept = resolved.kept
    _write_side((bad, resolved[DUPLICATE]) | "AllQuarantined" >> beam.Flatten()
                | "QuarantineRows" >> beam.Map(lambda x: (x[0], x[1], dataclasses.asdict(x[2]))),
                side / "quarantined.json", "Quarantined")
    _write_side(kept | "LongText" >> beam.FlatMap(_long_text, builder.max_text_chars),
                side / "long_text.json", "LongText")
    _ = (kept
         | "ContextRows" >> beam.Map(lambda x: (x[0], x[1], x[2].to_dict()))   # to_dict: no media bytes
         | "AllContextRows" >> beam.combiners.ToList()
         | "FitContext" >> beam.Map(_fit_context, names.index("train") if "train" in names else -1,
                                    side / "context.json"))
    for s, name in enumerate(names):
      writers[name] = _SplitWriter(
          serializer=serializer, filename_template=builder._get_filename_template(split_name=name),
          hash_salt=name, disable_shuffling=builder.info.disable_shuffling,
          example_writer=builder._example_writer(), shard_config=download_config.get_shard_config())
      _ = (kept
           | f"{name}/Examples" >> beam.FlatMap(_examples, s, builder.name, builder.info.features.encode_example)
           | f"{name}/Write" >> _WriteSplit(writers[name]))   # pylint: disable=no-value-for-parameter

  for s, i, q in sorted(_read_side(side / "quarantined.json"), key=lambda r: r[:2]):
    builder.quarantined[names[s]].append(records_lib.Quarantined(**q))
  for s, i, record_id in sorted(_read_side(side / "long_text.json"), key=lambda r: r[:2]):
    builder.long_text[names[s]].append(record_id)
  builder.context_json = _read_side(side / "context.json")
  side.rmtree()
  infos = []
  for name, writer in writers.items():
    lengths, size = writer.finalize()
    if not sum(lengths):
      builder.empty_splits.add(name)
      continue
    builder.kept[name] = sum(lengths)
    infos.append(splits_lib.SplitInfo(name=name, shard_lengths=lengths, num_bytes=size,
                                      filename_template=builder._get_filename_template(split_name=name)))
  if not infos:
    raise builder_lib.NoCleanRecord()
  return infos


def _read_split(s: int, reads: list[Callable]) -> Iterator[Row]:
  for i, item in enumerate(sources.parsed(reads[s])):
    yield s, i, item


def _validate(row: Row) -> Row:
  s, i, item = row
  return s, i, item.validate() if isinstance(item, sources.Parsed) else item


def _quarantined_or_not(row: Row, n: int) -> int:
  del n
  return int(isinstance(row[2], records_lib.Quarantined))


def _later_rows(id_rows: tuple[str, Any]) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
  """(row, first row) for every row of an id after its first, in (split, row) order."""
  first, *later = sorted(tuple(r) for r in id_rows[1])
  for row in later:
    yield row, first


class _Resolve(beam.DoFn):
  """A clean record is kept, or, when an earlier row had its id, quarantined as `duplicate_id`."""

  def __init__(self, names: list[str]):
    self._names = names

  def process(self, row: Row, later: dict):
    s, i, record = row
    first = later.get((s, i))
    if first is None:
      yield row
    else:
      yield beam.pvalue.TaggedOutput(DUPLICATE, (s, i, builder_lib.duplicate(
          record, (self._names[first[0]], f"#{first[1]}"), self._names[s], i)))


def _long_text(row: Row, limit: int) -> Iterator[tuple[int, int, str]]:
  if builder_lib.text_chars(row[2]) > limit:
    yield row[0], row[1], row[2].record_id


def _examples(row: Row, s: int, dataset: str, encode: Callable) -> Iterator[tuple[int, Any]]:
  if row[0] == s:
    yield row[1], encode(builder_lib.example(row[2], dataset))


def _fit_context(rows: list, train: int, path: epath.Path) -> None:
  rows = sorted(rows, key=lambda r: r[:2])   # the order the single-process build fits them in
  records = [(s, records_lib.ContentBehaviorRecord.from_dict(d)) for s, _, d in rows]
  context = verbalize.Context.fit([r for s, r in records if s == train], unseen=[r for s, r in records if s != train])
  path.write_text(json.dumps(builder_lib.context_to_json(context)))


def _write_side(pcoll, path: epath.Path, label: str) -> None:
  _ = (pcoll | f"{label}List" >> beam.combiners.ToList()
       | f"{label}Write" >> beam.Map(lambda rows: path.write_text(json.dumps(rows, ensure_ascii=False))))


def _read_side(path: epath.Path) -> Any:
  return json.loads(path.read_text())


class _SplitWriter(writer_lib.BeamWriter):
  """TFDS's BeamWriter, except that a split with no example writes no shard instead of failing the
  pipeline (`finalize` then gives no shard lengths and the split is left out)."""

  def _check_num_examples(self, num_examples: int) -> int:
    return num_examples


@beam.ptransform_fn
def _WriteSplit(pcoll, writer: _SplitWriter):  # pylint: disable=invalid-name
  return writer.write_from_pcollection(pcoll)
