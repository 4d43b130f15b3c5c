"""`lcbm bench data | train`: input-pipeline samples/s and training tokens/s, ratios measured side by side.

  lcbm bench data [--data DIR] --workers 0 2 --batches 20     # data_pipeline/bench.py
  lcbm bench train --preset demo --attention-block 0 128      # lcbm_jax/training/bench.py
  lcbm bench train --compare-torch                            # against transformers' LLaVA (bench_torch.py)
  lcbm bench train --profile                                  # where the step's time goes (profile.py)
"""
from __future__ import annotations

import argparse
import sys

from data_pipeline import bench as data_bench
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets
from lcbm_jax.training import bench as train_bench


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  del command   # one group: bench
  bsub = parser.add_subparsers(dest="bench_command", required=True)
  p = bsub.add_parser("data", help="samples/s of the full input pipeline with images")
  p.add_argument("--data", default=None, help="built data dir (default: generate a small corpus in a temp dir)")
  p.add_argument("--workers", type=int, nargs="*", default=[0, 2])
  p.add_argument("--batches", type=int, default=20)
  p.add_argument("--image-size", type=int, default=224, help="CLIP input size the images are resized to")
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


def _data(args) -> int:
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
