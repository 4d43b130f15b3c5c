"""The `lcbm` command line: one module per command group, each holding its parsers and their handlers.

  data.py      lcbm data generate | build | inspect
  train.py     lcbm train          (--config.KEY=VALUE overrides pass through to the config)
  evaluate.py  lcbm eval
  infer.py     lcbm predict | score
  hf.py        lcbm export-hf | import-hf
  bench.py     lcbm bench data | train

A module's `add_arguments(command, parser)` fills in the command's parser and sets `run`, the
handler: it takes the parsed arguments and calls typed library functions. `errors.exit_code` turns
a UserError into one line and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lcbm_jax.cli import errors

# command -> (module in this package, one-line help). Only the module of the command being run is
# imported: the model commands' modules import jax, the data commands' Grain and TFDS (seconds each),
# and `lcbm --help` needs none of them.
COMMANDS = {
    "data": ("data", "generate, build and inspect behavior corpora"),
    "train": ("train", "train from a Python config"),
    "eval": ("evaluate", "evaluate a checkpoint on behavior/content tasks"),
    "predict": ("infer", "generate a continuation"),
    "score": ("infer", "log-likelihood of a continuation"),
    "export-hf": ("hf", "write a Hugging Face LLaVA directory"),
    "import-hf": ("hf", "import a Hugging Face LLaVA (or CLIP + Llama) directory"),
    "bench": ("bench", "throughput benchmarks (ratios measured side by side)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
  """The `lcbm` parser; with `command`, that command's arguments and handler (its module imported)."""
  parser = argparse.ArgumentParser(
      prog="lcbm", description="Large Content and Behavior Models in JAX: data, training, evaluation, "
      "inference, and Hugging Face export.")
  sub = parser.add_subparsers(dest="command", required=True)
  for name, (module, help_) in COMMANDS.items():
    p = sub.add_parser(name, help=help_)
    if name == command:
      importlib.import_module(f"{__name__}.{module}").add_arguments(name, p)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
  # `lcbm train` takes `--config.KEY=VALUE` overrides: keep unknown `--config.` flags for it.
  args, unknown = parser.parse_known_args(argv)
  bad = [u for u in unknown if not (args.command == "train" and u.startswith("--config."))]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)}")
  args.config_overrides = [u for u in unknown if u not in bad]
  args.argv = list(argv)   # to run this command again in a child (a supervised multi-process train)
  return errors.exit_code(lambda: args.run(args))
