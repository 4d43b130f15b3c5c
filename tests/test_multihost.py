"""Two JAX processes on CPU (gloo collectives) train like one: same loss at every step.

The two-process run is the real `lcbm train` CLI (jax.distributed.initialize from flags, each
process reading its own data shard). The reference runs in this process on 2 of the 8 simulated
devices and feeds, as one global batch, what the two processes' pipelines produce side by side.
"""
import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from data_pipeline import pipeline
from lcbm_jax import sharding
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train
from train_helpers import built_corpus

ROOT = os.path.join(os.path.dirname(__file__), "..")
STEPS = 6


def test_two_processes_match_one(tmp_path):
  data = built_corpus(tmp_path)
  workdir = str(tmp_path / "run")
  overrides = [f"--config.data.dir={data}", f"--config.num_steps={STEPS}", "--config.log.every_steps=1",
               "--config.eval.every_steps=0", "--config.eval.batches=1", "--config.checkpoint.every_steps=100"]
  with socket.socket() as sock:   # a free port for the coordinator
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "lcbm_jax.cli", "train", "--config", "experiments/configs/demo.py:small",
       "--workdir", workdir, *overrides, "--coordinator-address", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i)],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert "2 process(es)" in outs[0]
  multi = [r["train/loss"] for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
           if "train/loss" in r]
  assert len(multi) == STEPS

  # Reference: one process, 2 devices, the two shards' batches concatenated in process order.
  config = config_lib.load(os.path.join(ROOT, "experiments/configs/demo.py:small"), overrides)
  model_cfg = train.model_config(config)
  tokenizer = os.path.join(workdir, "tokenizer")
  mesh = sharding.make_mesh(data=2, devices=jax.devices()[:2])
  base = dataclasses.replace(train.pipeline_config(config, model_cfg, tokenizer, mesh), num_epochs=None,
                             process_count=2)
  shards = [pipeline.make_iterator(dataclasses.replace(base, process_index=i)) for i in range(2)]
  model_cfg = dataclasses.replace(model_cfg, image_token_id=shards[0].tokenizer.image_id)
  steps = train.compile_steps(config, model_cfg, mesh)
  rng = jax.random.key(config.seed)
  state = steps.init(rng)
  single = []
  for _ in range(STEPS):
    local = [next(it) for it in shards]
    batch = {k: jax.device_put(np.concatenate([b[k] for b in local]), steps.batch_sharding) for k in train.STEP_KEYS}
    state, m = steps.train_step(state, batch, rng)
    single.append(float(m["loss"]))
  np.testing.assert_allclose(multi, single, atol=1e-5, rtol=0)
  assert single[-1] < single[0]

  # Resume with two processes: each hashes its share of the step's files (the verdicts combine with a
  # collective), both restore step STEPS and train on.
  resumed = [subprocess.Popen(
      [sys.executable, "-m", "lcbm_jax.cli", "train", "--config", "experiments/configs/demo.py:small",
       "--workdir", workdir, *overrides[:1], f"--config.num_steps={STEPS + 2}", *overrides[2:],
       "--coordinator-address", f"localhost:{port + 1}", "--num-processes", "2", "--process-id", str(i)],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in resumed]
  assert [p.returncode for p in resumed] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert f"resumed from step {STEPS}" in outs[0]
  rows = [r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if "train/loss" in r]
  assert [r["step"] for r in rows] == list(range(1, STEPS + 3))
