"""TFDS builder: the generic lcbm JSONL schema (one ContentBehaviorRecord-shaped object per line) -> ArrayRecord.

Build (each `<split>.jsonl` in the input directory becomes a split; a single file is `train`
unless its name is a split name):

  lcbm data build --source jsonl --input PATH/TO/jsonl --out data/built

Media paths resolve against `--media-root` (default: the directory of each input file).
"""
from data_pipeline.tfds_builders import builder


class Jsonl(builder.CorpusBuilder, skip_registration=True):
  """the generic lcbm JSONL schema (one ContentBehaviorRecord-shaped object per line)."""

  SOURCE = "jsonl"
  FILE_SUFFIX = ".jsonl"
