"""TFDS builder: brand tweets (jsonl; account, brand, date, text, media, likes) -> ArrayRecord.

Build (each `<split>.jsonl` in the input directory becomes a split; a single file is `train`
unless its name is a split name):

  lcbm data build --source tweets --input PATH/TO/tweets --out data/built

Media paths resolve against `--media-root` (default: the directory of each input file).
"""
from data_pipeline.tfds_builders import builder


class Tweets(builder.CorpusBuilder, skip_registration=True):
  """brand tweets (jsonl; account, brand, date, text, media, likes)."""

  SOURCE = "tweets"
  FILE_SUFFIX = ".jsonl"
