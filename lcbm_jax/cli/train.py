"""`lcbm train`: load a Python config (+ `--config.KEY=VALUE` overrides), join the other processes, train.

  lcbm train --config experiments/configs/demo.py:small --workdir /tmp/run --config.num_steps=20
"""
from __future__ import annotations

import argparse
import json

import jax

from lcbm_jax.training import config as config_lib
from lcbm_jax.training import processes, train


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  del command   # one command: train
  parser.add_argument("--config", required=True, help="experiments/configs/NAME.py[:ARG]")
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics and plots go here")
  # Multi-host: these (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) join the
  # processes with jax.distributed.initialize(); TPU pods need none of them.
  parser.add_argument("--coordinator-address", default=None, help="host:port of process 0")
  parser.add_argument("--num-processes", type=int, default=None)
  parser.add_argument("--process-id", type=int, default=None)
  parser.set_defaults(run=_train)


def _train(args) -> int:
  if processes.needs_supervision(args.num_processes) and args.argv is not None:
    # A lost process 0 aborts the others inside JAX's C++ runtime: a supervisor turns that into one line.
    return processes.run_supervised(args.argv, args.process_id, args.num_processes)
  config = config_lib.load(args.config, args.config_overrides)
  train.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  summary = train.train(config, args.workdir)
  if jax.process_index() == 0:
    print(json.dumps(summary))
  return 0
