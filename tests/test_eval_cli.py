"""`lcbm eval` end to end: a tiny random model saved as a checkpoint, a tiny built corpus.

The checkpoint records its training data dir, so `--data` is not needed; the table shows model
and baselines side by side; a bad checkpoint path is one line on stderr and exit code 2.
"""
import json
import os
import subprocess
import sys

import pytest

import pipeline_helpers
from eval_helpers import random_params
from lcbm_jax import checkpoint, cli
from lcbm_jax.errors import UserError
from lcbm_jax.cli import evaluate as eval_cli
from lcbm_jax.model import presets

# Six test videos: videos have 1-7 scenes, and content simulation needs two with more than one.
COUNTS = {("cbc", "train"): 12, ("cbc", "test"): 6, ("blift", "train"): 10, ("blift", "test"): 2,
          ("tweets", "train"): 40, ("tweets", "test_time"): 4, ("tweets", "test_brand"): 3}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval_cli")
  data_dir, tok_dir = pipeline_helpers.build_tiny(str(root), COUNTS)
  cfg = presets.get("tiny")
  params = random_params(cfg)
  path = checkpoint.save_params(root / "ckpt", cfg, params, tok_dir, config={"data": {"dir": data_dir}})
  return str(path), data_dir


def test_lcbm_eval_prints_model_and_baselines_side_by_side(ckpt, capsys):
  # A generate-and-parse task, a generate + 2-way scoring task and a 100-way scoring task: every
  # kind of model call (the other tasks' metrics are checked through run.evaluate in test_evaluation).
  path, _ = ckpt
  assert cli.main(["eval", "--checkpoint", path, "--max-examples", "2", "--tasks", "behavior_simulation",
                   "likes_high_low", "zero_shot_memorability"]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].split() == ["task", "metric", "model", "baselines", "n"]
  rows = {tuple(line.split()[:2]) for line in table[2:]}
  for want in [("behavior_simulation", "replay_rmse"), ("behavior_simulation", "replay_acc<=5"),
               ("behavior_simulation", "replay_unparseable"), ("behavior_simulation", "views_log10_r2"),
               ("behavior_simulation", "likes_per_view_acc_within_10%"), ("likes_high_low/time", "accuracy"),
               ("likes_high_low/brand", "accuracy"), ("optimize_tweets", "top1_most_liked"),
               ("zero_shot_memorability", "spearman")]:
    assert want in rows, want
  line = next(l for l in table if l.startswith("behavior_simulation") and " replay_rmse " in l)
  assert "position_mean=" in line and "global_mean=" in line and "random=" in line


def test_lcbm_eval_json_has_model_baselines_and_counts(ckpt, capsys):
  path, data_dir = ckpt
  assert cli.main(["eval", "--checkpoint", path, "--data", data_dir, "--tasks", "content_simulation_choice",
                   "zero_shot_tone", "--max-examples", "2", "--json"]) == 0
  res = json.loads(capsys.readouterr().out)
  choice = res["content_simulation_choice"]["accuracy"]
  assert choice["n"] == 2 and 0 <= choice["model"] <= 1 and 0 < choice["baselines"]["random"] <= 0.5
  tone = res["zero_shot_tone"]["accuracy"]
  assert tone["n"] == 2 and tone["baselines"]["random"] == 0.25 and "majority" in tone["baselines"]


def test_unknown_task_is_a_user_error(ckpt, capsys):
  path, _ = ckpt
  assert cli.main(["eval", "--checkpoint", path, "--tasks", "nonsense"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown eval task" in err[0] and "behavior_simulation" in err[0]


def test_bad_checkpoint_path_is_one_line_and_exit_2(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", "eval", "--checkpoint", str(tmp_path / "nope")],
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("lcbm: error:") and "nope" in lines[0], proc.stderr
  assert proc.stdout == ""


def test_checkpoint_without_data_dir_asks_for_data(tmp_path):
  cfg = presets.get("tiny")
  path = checkpoint.save_params(tmp_path / "c", cfg, random_params(cfg, seed=1))
  with pytest.raises(UserError, match="--data"):
    eval_cli._data_dir_from_checkpoint(str(path))


def test_data_dir_without_a_built_corpus_is_a_user_error(ckpt, tmp_path, capsys):
  path, _ = ckpt
  assert cli.main(["eval", "--checkpoint", path, "--data", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "train split" in err[0] and "lcbm data build" in err[0]
