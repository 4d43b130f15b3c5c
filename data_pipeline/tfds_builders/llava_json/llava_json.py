"""TFDS builder: LLaVA conversation data (a `.json` list or `.jsonl` of {id, image | video, conversations})
-> ArrayRecord.

Build (each `<split>.json` / `<split>.jsonl` in the input directory becomes a split; a single file
is `train` unless its name is a split name). Image paths are relative to LLaVA's image folder:

  lcbm data build --source llava_json --input llava_v1_5_mix665k.json --media-root PATH/TO/images --out data/built

Media paths resolve against `--media-root` (default: the directory of each input file).
"""
from data_pipeline.tfds_builders import builder


class LlavaJson(builder.CorpusBuilder, skip_registration=True):
  """LLaVA conversation data (captions, instruction mixtures, ShareGPT text-only rows)."""

  SOURCE = "llava_json"
  FILE_SUFFIX = (".json", ".jsonl")
