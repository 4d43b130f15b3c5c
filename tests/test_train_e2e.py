"""`lcbm train` has a pulse: a short run on a tiny generated corpus lowers the loss, reads every
config key, and leaves metrics, TensorBoard events, a plot and a verified checkpoint behind."""
import json
import os
import subprocess
import sys

import numpy as np

from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train
from train_helpers import built_corpus

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_short_run_learns_and_reads_every_config_key(tmp_path):
  data = built_corpus(tmp_path)
  config = config_lib.load(os.path.join(ROOT, "experiments/configs/demo.py:small"),
                           [f"--config.data.dir={data}", "--config.eval.splits=test,test_time",
                            "--config.num_steps=40", "--config.mesh.fsdp=2", "--config.log.peak_flops=1e11"])
  recording = config_lib.RecordingConfig(config)
  workdir = str(tmp_path / "run")
  summary = train.train(recording, workdir)

  unread = set(config_lib.flat_keys(config)) - recording.reads
  assert not unread, f"config keys nothing reads: {sorted(unread)}"
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_loss = [r["train/loss"] for r in rows if "train/loss" in r]
  eval_loss = [r["eval/loss"] for r in rows if "eval/loss" in r]
  assert train_loss[-1] < 0.6 * train_loss[0], train_loss
  assert eval_loss[-1] < eval_loss[0] and np.isfinite(summary["eval_loss"])
  assert any("train/loss_likes_high_low" in r for r in rows) and any("train/loss_behavior_simulation" in r for r in rows)
  assert {"train/grad_norm", "train/update_norm", "train/param_norm", "perf/mfu"} <= set(rows[-2])
  assert 0 < summary["mfu"] < 1 and summary["step"] == 40
  assert os.path.getsize(os.path.join(workdir, "metrics.png")) > 10_000
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard")))
  assert os.path.exists(os.path.join(workdir, "checkpoints", "40", "manifest.json"))


def test_cli_rejects_unknown_and_mistyped_keys_with_exit_2(tmp_path):
  base = [sys.executable, "-m", "lcbm_jax.cli", "train", "--config", "experiments/configs/demo.py:small",
          "--workdir", str(tmp_path)]
  for flag, message in (("--config.optim.lrr=1", "did you mean optim.lr"),
                        ("--config.num_steps=ten", "expected int")):
    p = subprocess.run(base + [flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and message in p.stderr, p.stderr
