"""TFDS builder: BLIFT Reddit/YouTube posts (jsonl; title, comments, upvotes as `score`) -> ArrayRecord.

Build (each `<split>.jsonl` in the input directory becomes a split; a single file is `train`
unless its name is a split name):

  lcbm data build --source blift --input PATH/TO/blift --out data/built

Media paths resolve against `--media-root` (default: the directory of each input file).
"""
from data_pipeline.tfds_builders import builder


class Blift(builder.CorpusBuilder, skip_registration=True):
  """BLIFT Reddit/YouTube posts (jsonl; title, comments, upvotes as `score`)."""

  SOURCE = "blift"
  FILE_SUFFIX = ".jsonl"
