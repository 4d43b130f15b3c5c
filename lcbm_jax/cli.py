"""`lcbm` command line: one parser per subcommand, handlers imported lazily from their modules.

Handlers live next to the code they drive (see `_HANDLERS`); importing them lazily keeps
`lcbm --help` fast and keeps jax out of commands that do not need it. A `UserError` from any
handler becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lcbm_jax.errors import UserError

# subcommand -> "module:function"; each function takes the parsed argparse.Namespace, returns an exit code or None.
_HANDLERS = {
    "data generate": "data_pipeline.sources.behavior_world:cli_generate",
    "data build": "data_pipeline.commands:cli_build",
    "data inspect": "data_pipeline.commands:cli_inspect",
    "train": "lcbm_jax.training.train:cli_main",
    "eval": "lcbm_jax.evaluation.run:cli_main",
    "predict": "lcbm_jax.inference_cli:cli_predict",
    "score": "lcbm_jax.inference_cli:cli_score",
    "export-hf": "lcbm_jax.export.hf_cli:cli_export",
    "import-hf": "lcbm_jax.export.hf_cli:cli_import",
    "bench data": "data_pipeline.bench:cli_bench",
    "bench train": "lcbm_jax.training.bench:cli_bench",
}


def _data_parsers(sub):
  data = sub.add_parser("data", help="generate, build and inspect behavior corpora")
  dsub = data.add_subparsers(dest="data_command", required=True)

  p = dsub.add_parser("generate", help="write the embedded behavior corpus (real schemas, with media)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--size", choices=("small", "medium", "large"), default="small")
  p.set_defaults(command="data generate")

  p = dsub.add_parser("build", help="parse + validate a corpus into TFDS ArrayRecord shards")
  p.add_argument("--source", required=True, choices=("cbc", "blift", "tweets", "jsonl", "behavior_world"))
  p.add_argument("--input", required=True, help="corpus file or directory")
  p.add_argument("--out", required=True, help="TFDS data_dir to write")
  p.add_argument("--media-root", default=None, help="where relative media paths resolve (default: next to --input)")
  p.set_defaults(command="data build")

  p = dsub.add_parser("inspect", help="counts, a verbalized sample per task, token lengths, quarantine table")
  p.add_argument("dir", help="a built TFDS data_dir (or a generated corpus directory)")
  p.add_argument("--tokenizer", default=None, help="tokenizer.model for the token-length histogram")
  p.add_argument("--seq-len", type=int, default=512, help="sequence length for the packing-efficiency figure")
  p.add_argument("--num-image-tokens", type=int, default=16, help="ids per <image> (the vision tower's patches)")
  p.add_argument("--max-images", type=int, default=4, help="images per sample and per packed row")
  p.add_argument("--png", default=None, help="also write the token-length histogram as a PNG here")
  p.set_defaults(command="data inspect")


def _model_parsers(sub):
  p = sub.add_parser("train", help="train from a Python config")
  p.add_argument("--config", required=True, help="experiments/configs/NAME.py[:ARG]")
  p.add_argument("--workdir", required=True, help="checkpoints, metrics and plots go here")
  # Multi-host: these (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) join the
  # processes with jax.distributed.initialize(); TPU pods need none of them.
  p.add_argument("--coordinator-address", default=None, help="host:port of process 0")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  p.set_defaults(command="train")

  p = sub.add_parser("eval", help="evaluate a checkpoint on behavior/content tasks")
  p.add_argument("--checkpoint", required=True, help="training workdir, one step's directory, or an HF directory")
  p.add_argument("--data", default=None, help="data directory to evaluate on (default: the one in the checkpoint's config)")
  p.add_argument("--tasks", nargs="*", default=None, help="task names (default: all the data supports)")
  p.add_argument("--max-examples", type=int, default=None)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.set_defaults(command="eval")

  for name, help_ in (("predict", "generate a continuation"), ("score", "log-likelihood of a continuation")):
    p = sub.add_parser(name, help=help_)
    p.add_argument("--checkpoint", required=True, help="training workdir, one step's directory, or an HF directory")
    p.add_argument("--prompt", required=True, help="text; one <image> per --image")
    p.add_argument("--image", action="append", default=[], help="image file, once per <image> in the prompt")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if name == "predict":
      p.add_argument("--max-new-tokens", type=int, default=64)
      p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
      p.add_argument("--top-p", type=float, default=1.0)
      p.add_argument("--seed", type=int, default=0)
    else:
      p.add_argument("--continuation", required=True)
    p.set_defaults(command=name)

  p = sub.add_parser("export-hf", help="write a Hugging Face LLaVA directory")
  p.add_argument("--checkpoint", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: the checkpoint's param dtype")
  p.set_defaults(command="export-hf")

  p = sub.add_parser("import-hf", help="import a Hugging Face LLaVA (or CLIP + Llama) directory")
  p.add_argument("--hf-dir", default=None, help="LlavaForConditionalGeneration directory")
  p.add_argument("--vision-dir", default=None, help="CLIP vision directory (with --llm-dir)")
  p.add_argument("--llm-dir", default=None, help="Llama directory (with --vision-dir); a new projector is initialised")
  p.add_argument("--out", required=True, help="checkpoint directory to write")
  p.add_argument("--seed", type=int, default=0, help="projector initialisation seed (CLIP + Llama import)")
  p.set_defaults(command="import-hf")


def _bench_parsers(sub):
  bench = sub.add_parser("bench", help="throughput benchmarks (ratios measured side by side)")
  bsub = bench.add_subparsers(dest="bench_command", required=True)
  p = bsub.add_parser("data", help="samples/s of the full input pipeline with images")
  p.add_argument("--data", default=None, help="built data dir (default: generate a small corpus in a temp dir)")
  p.add_argument("--workers", type=int, nargs="*", default=[0, 2])
  p.add_argument("--batches", type=int, default=20)
  p.add_argument("--image-size", type=int, default=224, help="CLIP input size the images are resized to")
  p.set_defaults(command="bench data")
  p = bsub.add_parser("train", help="training tokens/s and MFU for a preset")
  p.add_argument("--preset", default="bench")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--seq-len", type=int, default=512)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--attention-block", type=int, nargs="*", default=None,
                 help="query rows per causal attention block, one run each side by side (0 = full attention)")
  p.set_defaults(command="bench train")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="lcbm", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="top", required=True)
  _data_parsers(sub)
  _model_parsers(sub)
  _bench_parsers(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  # `lcbm train` takes `--config.KEY=VALUE` overrides: keep unknown `--config.` flags for it.
  args, unknown = parser.parse_known_args(argv)
  bad = [u for u in unknown if not (args.command == "train" and u.startswith("--config."))]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)}")
  args.config_overrides = [u for u in unknown if u not in bad]
  module_name, func_name = _HANDLERS[args.command].split(":")
  try:
    handler = getattr(importlib.import_module(module_name), func_name)
    return int(handler(args) or 0)
  except UserError as e:
    print(f"lcbm: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("lcbm: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
