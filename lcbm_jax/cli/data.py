"""`lcbm data generate | build | inspect`: the embedded corpus, TFDS ArrayRecord builds, and a look at them.

  lcbm data generate --out /tmp/bw                                   # the embedded corpus
  lcbm data generate --out /tmp/bw-long --scenes 8-24                # long videos (k-BFT)
  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built
  lcbm data build --source behavior_world --input /tmp/bw --out /tmp/built --beam   # on Apache Beam
  lcbm data inspect /tmp/built --seq-len 512
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from data_pipeline import commands, world
from data_pipeline.tfds_builders import builder as builder_lib


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  del command   # one group: data
  dsub = parser.add_subparsers(dest="data_command", required=True)

  p = dsub.add_parser("generate", help="write the embedded behavior corpus (real schemas, with media)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--size", choices=("small", "medium", "large"), default="small")
  p.add_argument("--scenes", type=_scene_range, default=None, metavar="LO-HI",
                 help=f"scenes per video, uniform in LO..HI (default {world.MIN_SCENES}-{world.MAX_SCENES}; "
                 f"{world.LONG_SCENES[0]}-{world.LONG_SCENES[1]} gives videos long enough for k-BFT windows, "
                 "with rows longer than 512 tokens)")
  p.add_argument("--media-size", type=int, default=None, metavar="PX",
                 help=f"images and keyframes PX pixels a side with photo-like grain (default {world.IMAGE_SIZE}, "
                 "drawn as they are): real-size media for build-speed measurements")
  p.set_defaults(run=_generate)

  p = dsub.add_parser("build", help="parse + validate a corpus into TFDS ArrayRecord shards")
  p.add_argument("--source", required=True, choices=("cbc", "blift", "tweets", "jsonl", "llava_json", "behavior_world"))
  p.add_argument("--input", required=True, help="corpus file or directory")
  p.add_argument("--out", required=True, help="TFDS data_dir to write")
  p.add_argument("--media-root", action="append", default=None,
                 help="where relative media paths resolve (default: next to --input); repeat it to allow media "
                 "(absolute paths too) under more directories: nothing outside the named roots is opened")
  p.add_argument("--max-text-chars", type=int, default=builder_lib.MAX_TEXT_CHARS,
                 help="count and report records with more text than this (they are still built)")
  p.add_argument("--beam", action="store_true",
                 help="build in an Apache Beam pipeline: the same records and report (pip install 'lcbm-jax[beam]')")
  p.add_argument("--beam-options", default=None, metavar="OPTIONS",
                 help='Beam pipeline options as one string (implies --beam), e.g. "--runner=DirectRunner '
                 '--direct_num_workers=2 --direct_running_mode=multi_processing", or a Dataflow runner\'s')
  p.set_defaults(run=_build)

  p = dsub.add_parser("inspect", help="counts, a verbalized sample per task, token lengths, quarantine table")
  p.add_argument("dir", help="a built TFDS data_dir (or a generated corpus directory)")
  p.add_argument("--tokenizer", default=None, help="tokenizer (a tokenizer.model, or a Hugging Face directory) for the token-length histogram")
  p.add_argument("--seq-len", type=int, default=512, help="sequence length for the packing-efficiency figure")
  p.add_argument("--num-image-tokens", type=int, default=16, help="ids per <image> (the vision tower's patches)")
  p.add_argument("--max-images", type=int, default=4, help="images per sample")
  p.add_argument("--batch-size", type=int, default=1, help="rows per batch for the image-budget figure")
  p.add_argument("--images-per-batch", type=int, default=0,
                 help="the image budget per batch (0 = batch size x max images)")
  p.add_argument("--png", default=None, help="also write the token-length histogram as a PNG here")
  p.set_defaults(run=_inspect)


def _scene_range(text: str) -> tuple[int, int]:
  lo, sep, hi = text.partition("-")
  try:
    span = (int(lo), int(hi if sep else lo))
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not LO-HI (e.g. 8-24)") from None
  if not 1 <= span[0] <= span[1]:
    raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= LO <= HI")
  return span


def _generate(args) -> int:
  manifest = world.generate(args.out, seed=args.seed, size=args.size, scenes=args.scenes, media_size=args.media_size)
  for e in manifest["files"]:
    print(f"{e['path']:28s} {e['count']:7d} records")
  print(f"wrote {manifest['total_records']} records to {args.out} (seed {args.seed}, size {args.size})")
  return 0


def _build(args) -> int:
  beam_options = args.beam_options if args.beam_options is not None else "" if args.beam else None
  for report in commands.build_corpus(args.source, args.input, args.out, args.media_root,
                                       max_text_chars=args.max_text_chars, beam_options=beam_options):
    print(commands.format_report(report))
  return 0


def _inspect(args) -> int:
  with tempfile.TemporaryDirectory(prefix="lcbm-inspect-") as tmp:
    data_dir = args.dir
    if os.path.exists(os.path.join(data_dir, world.MANIFEST_FILE)) and not commands.is_built(data_dir):
      # A generated corpus, not yet built: build it into a temporary directory first.
      print(f"{data_dir} is a generated corpus; building it into {tmp} first", file=sys.stderr)
      commands.build_corpus("behavior_world", data_dir, tmp)
      data_dir = tmp
    print(commands.inspect_text(data_dir, tokenizer=args.tokenizer, seq_len=args.seq_len,
                                num_image_tokens=args.num_image_tokens, max_images=args.max_images, batch_size=args.batch_size,
                                images_per_batch=args.images_per_batch, png=args.png))
  return 0
