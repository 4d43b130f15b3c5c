"""TFDS builder: Content Behavior Corpus (YouTube videos; parquet, one row per video, scenes with
ASR/OCR/captions and replay values) -> ArrayRecord.

Build (each `<split>.parquet` in the input directory becomes a split; a single file is `train`
unless its name is a split name):

  lcbm data build --source cbc --input PATH/TO/cbc --out data/built

Media paths resolve against `--media-root` (default: the directory of each input file).
"""
from data_pipeline.tfds_builders import builder


class Cbc(builder.CorpusBuilder, skip_registration=True):
  """Content Behavior Corpus: YouTube videos, one parquet row per video, per-scene text and replay values."""

  SOURCE = "cbc"
  FILE_SUFFIX = ".parquet"
