"""`lcbm bench data | train | memory`: input-pipeline samples/s, training tokens/s (ratios measured side
by side) and the per-device memory of real-size steps on named targets.

  lcbm bench data [--data DIR] --workers 0 2 --batches 20     # data_pipeline/bench.py
  lcbm bench data --build --media-size 512                    # records/s of `lcbm data build`, and on Beam
  lcbm bench train --preset demo --attention-block 0 128      # lcbm_jax/training/bench.py
  lcbm bench train --compare-torch                            # against transformers' LLaVA (bench_torch.py)
  lcbm bench train --profile                                  # where the step's time goes (profile.py)
  lcbm bench decode                                           # greedy decoding against transformers (inference_bench.py)
  lcbm bench memory                                           # 7B/13B per device, compiled ahead of time (memory.py)
"""
from __future__ import annotations

import argparse
import json
import sys

from data_pipeline import bench as data_bench
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets
from lcbm_jax.training import bench as train_bench
from lcbm_jax.training import memory


def _at_least_one(text: str) -> int:
  n = int(text)
  if n < 1:
    raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
  return n


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  del command   # one group: bench
  bsub = parser.add_subparsers(dest="bench_command", required=True)
  p = bsub.add_parser("data", help="samples/s of the full input pipeline with images")
  p.add_argument("--data", default=None, help="built data dir (default: generate a small corpus in a temp dir)")
  p.add_argument("--workers", type=int, nargs="*", default=[0, 2])
  p.add_argument("--batches", type=int, default=20)
  p.add_argument("--image-size", type=int, default=224, help="CLIP input size the images are resized to")
  p.add_argument("--build", action="store_true",
                 help="instead: records/s of `lcbm data build`, single process and on Beam's DirectRunner, side by side")
  p.add_argument("--corpus", default=None, help="--build: a generated corpus (default: generate one in a temp dir)")
  p.add_argument("--media-size", type=int, default=512, help="--build: pixels a side of the generated media")
  p.add_argument("--size", choices=("small", "medium", "large"), default="small", help="--build: corpus size")
  p.add_argument("--beam-workers", type=int, default=2, help="--build: DirectRunner worker processes")
  p.set_defaults(run=_data)
  p = bsub.add_parser("train", help="training tokens/s and MFU for a preset")
  p.add_argument("--preset", default="bench")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--batch-size", type=int, default=4)
  p.add_argument("--seq-len", type=int, default=512)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--attention-block", type=int, nargs="*", default=None,
                 help="query rows per causal attention block, one run each side by side (0 = full attention)")
  p.add_argument("--compare-torch", action="store_true",
                 help="time transformers' LlavaForConditionalGeneration on PyTorch beside our step, from the same "
                      "weights (step-0 losses checked first), vision tower trained and frozen")
  p.add_argument("--threads", type=int, default=None, help="torch threads for --compare-torch (default: all cores)")
  p.add_argument("--profile", action="store_true",
                 help="also trace the step and print the time, FLOPs and achieved GFLOP/s of each component")
  p.set_defaults(run=_train)
  p = bsub.add_parser("decode", help="batched greedy decoding tokens/s against transformers' generate, same "
                                     "weights, ids checked equal first")
  p.add_argument("--preset", default="bench")
  p.add_argument("--batch-size", type=_at_least_one, default=8)
  p.add_argument("--prompt-len", type=int, default=32, help="text tokens per prompt, after bos and one image")
  p.add_argument("--new-tokens", type=_at_least_one, default=64)
  p.add_argument("--repeats", type=_at_least_one, default=3)
  p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
  p.set_defaults(run=_decode)
  p = bsub.add_parser("memory", help="per-device memory of a real-size training step on a named target, compiled "
                                     "ahead of time (TPU: libtpu's compiler; GPU: an estimate on CPU devices)")
  p.add_argument("--preset", default=None, help="model preset (default: the three reports the recipes launch)")
  p.add_argument("--target", default=None, choices=sorted(memory.TARGETS))
  p.add_argument("--grad-accum", type=_at_least_one, default=1, help="micro-batches per step of 128 rows")
  p.add_argument("--seq-len", type=_at_least_one, default=2048)
  p.add_argument("--remat", nargs="*", default=["full", "none"], choices=presets.REMAT_POLICIES)
  p.add_argument("--json", default=None, help="also write the reports to this JSON file")
  p.set_defaults(run=_memory)


def _data(args) -> int:
  if args.build:
    print(data_bench.format_build_results(data_bench.build_bench(
        args.corpus, media_size=args.media_size, size=args.size, beam_workers=args.beam_workers)))
    return 0
  # The images are normalised as a model with the default (OpenAI CLIP) normalisation would see them.
  results = data_bench.bench(args.data, args.workers, args.batches, image_mean=presets.CLIP_MEAN,
                             image_std=presets.CLIP_STD, image_size=args.image_size)
  print(data_bench.format_results(results, args.image_size))
  return 0


def _train(args) -> int:
  """One run per --attention-block value (0 = full attention), printed with its speed-up over the first."""
  if args.compare_torch:
    from lcbm_jax.training import bench_torch   # here: it needs torch, which only --compare-torch uses
    if args.dtype != "float32":
      raise UserError("--compare-torch compares float32 steps (the CPU's dtype); drop --dtype")
    for frozen in (False, True):
      r = bench_torch.compare(args.preset, args.batch_size, args.seq_len, args.steps, frozen, args.threads)
      print(bench_torch.format_result(r))
    return 0
  first = None
  for block in args.attention_block or [presets.get(args.preset).text.attention_block]:
    r = train_bench.run(args.preset, args.steps, args.batch_size, args.seq_len, args.dtype, attention_block=block,
                        profile=args.profile)
    first = first or r
    print(f"preset {r['preset']} ({r['dtype']}) attention block {block or 'off'} on {r['devices']} device(s): "
          f"compile {r['compile_s']:.1f} s, step {r['step_s'] * 1e3:.0f} ms, {r['tokens_per_s']:.0f} tokens/s "
          f"({first['step_s'] / r['step_s']:.2f}x), {r['achieved_gflops']:.1f} GFLOP/s "
          f"of {r['peak_gflops']:.1f} peak = MFU {100 * r['mfu']:.1f}%", file=sys.stderr)
    if args.profile:
      print(r["profile"])
  return 0


def _decode(args) -> int:
  from lcbm_jax import inference_bench   # here: it needs torch, which only this command uses
  r = inference_bench.compare(args.preset, args.batch_size, args.prompt_len, args.new_tokens, args.repeats,
                              args.threads)
  print(inference_bench.format_result(r))
  return 0


def _memory(args) -> int:
  """Each (preset, target) report at every --remat policy, one table; a line per compile as it finishes."""
  if (args.preset is None) != (args.target is None):
    raise UserError("give --preset and --target together, or neither (the recipes' three reports)")
  runs = [(args.preset, args.target, args.grad_accum)] if args.preset else memory.DEFAULT_REPORTS
  if args.preset:
    presets.get(args.preset)   # an unknown name fails before any compile
  reports = []
  for preset, target, accum in runs:
    for remat in args.remat:
      print(f"compiling {preset} for {target} (remat {remat}) ...", file=sys.stderr, flush=True)
      reports.append(memory.measure(preset, target, accum, remat, seq_len=args.seq_len))
      r = reports[-1]
      print(f"  peak {r['peak_bytes'] / memory.GIB:.1f} GiB per device of {r['hbm_gib']:.0f} "
            f"({r['compile_s']:.0f} s)", file=sys.stderr, flush=True)
  print(memory.format_table(reports))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(reports, f, indent=1)
  return 0
