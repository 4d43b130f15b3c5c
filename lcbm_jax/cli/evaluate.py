"""`lcbm eval`: a checkpoint on the behavior/content tasks of a built data dir, model next to baselines.

  lcbm eval --checkpoint runs/demo/train [--data DIR] [--tasks ...] [--max-examples N] [--json]

Without `--data` the data dir is the one the checkpoint's training config recorded.
"""
from __future__ import annotations

import argparse
import json
import os

from lcbm_jax import artifacts
from lcbm_jax.errors import UserError
from lcbm_jax.evaluation import run as eval_run
from lcbm_jax.evaluation import table


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  del command   # one command: eval
  parser.add_argument("--checkpoint", required=True, help="training workdir, one step's directory, or an HF directory")
  parser.add_argument("--data", default=None,
                      help="data directory to evaluate on (default: the one in the checkpoint's config)")
  parser.add_argument("--tasks", nargs="*", default=None, help="task names (default: all the data supports)")
  parser.add_argument("--max-examples", type=int, default=None)
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.set_defaults(run=_eval)


def _data_dir_from_checkpoint(path: str) -> str:
  """`data.dir` of the training config saved with the step `path` resolves to (the newest verified one)."""
  data = artifacts.training_config(path).get("data") or {}
  if not isinstance(data, dict) or not data.get("dir"):
    raise UserError(f"{path} does not record a training data dir; pass --data DIR (a built data dir)")
  return data["dir"]


def _eval(args) -> int:
  if not os.path.exists(args.checkpoint):
    raise UserError(f"checkpoint path {args.checkpoint} does not exist; pass a training workdir, "
                    "a step directory or an exported HF directory")
  cfg, params, tok = artifacts.load_for_inference(args.checkpoint)
  data_dir = args.data or _data_dir_from_checkpoint(args.checkpoint)
  results = eval_run.evaluate(cfg, params, tok, data_dir, args.tasks or None,
                              100 if args.max_examples is None else args.max_examples,
                              conversation=artifacts.conversation(args.checkpoint))
  if args.json:
    print(json.dumps(results, default=float))
  else:
    print(table.format_table(results))
  return 0
