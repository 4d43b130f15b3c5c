"""experiments/free_lunch.py --smoke: the table's shape (every arm x seed x task, zero-shot and
fine-tuned, intervals, the three checks), and a study SIGKILLed midway that, started again, reuses
every finished step (counted and printed) and ends with the uninterrupted study's result."""
from __future__ import annotations

import json
import math
import signal
import time

import pytest

import study_helpers

ARMS, TASKS, FRACTIONS = ("base", "behavior", "control"), ("tone", "topic", "memorability"), ("25", "50", "100")


def _check_shape(result: dict, seeds: int) -> None:
  assert result["seeds"] == list(range(seeds)) and result["arms"] == list(ARMS)
  blocks = [result["zero_shot"]] + [result["finetuned"][p] for p in FRACTIONS]
  for block in blocks:
    assert set(block) == set(TASKS)
    for task, row in block.items():
      for arm in ARMS:
        assert len(row["arms"][arm]["per_seed"]) == seeds, (task, arm)
        assert all(math.isfinite(v) or task == "memorability" for v in row["arms"][arm]["per_seed"])
      boot = row["behavior_minus_control"]
      assert len(boot["ci95"]) == 2 and boot["seeds"] == seeds and boot["items"] > 0
      if task != "memorability":   # a tiny random model's memorability may be constant: Spearman is NaN then
        assert boot["ci95"][0] <= boot["estimate"] <= boot["ci95"][1]
  assert set(result["checks"]) == {"a_behavior_learned", "b_positive_control", "c_token_parity"}
  for arm in ARMS:
    assert len(result["tokens"][arm]) == seeds and all(t["loss_tokens"] > 0 for t in result["tokens"][arm])
  lengths = result["row_lengths"]
  assert lengths["blift"]["rows"] == lengths["blift_twin"]["rows"] > 0


def _run(workdir, cache):
  # Both studies share one compilation cache, so the second compiles nothing.
  return study_helpers.run("free_lunch", "--workdir", str(workdir), "--smoke", JAX_COMPILATION_CACHE_DIR=str(cache))


@pytest.mark.slow
def test_smoke_table_and_a_killed_study_resumed(tmp_path):
  ref = _run(tmp_path / "ref", tmp_path / "cache")
  assert ref.returncode == 0, ref.stderr[-3000:]
  result = json.loads((tmp_path / "ref" / "result.json").read_text())
  _check_shape(result, seeds=2)
  assert (tmp_path / "ref" / "results.md").read_text().startswith("Free lunch (smoke mode")
  for name in ("tone", "topic", "memorability", "curves"):
    assert (tmp_path / "ref" / f"free_lunch_{name}.png").stat().st_size > 1000
  assert "0 step(s) reused" in ref.stdout

  # Killed once seed 0's arms are trained and its probes are under way; started again.
  proc = study_helpers.start("free_lunch", "--workdir", str(tmp_path / "run"), "--smoke",
                             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
  marker = tmp_path / "run" / "steps" / "seed0" / "behavior" / "ft25" / "train.json"
  deadline = time.time() + 900
  while not marker.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = len(list((tmp_path / "run" / "steps").rglob("*.json")))
  assert finished >= 8
  again = _run(tmp_path / "run", tmp_path / "cache")
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"{finished} step(s) reused (finished before, not redone)" in again.stdout
  assert again.stderr.count("] running ") == len(list((tmp_path / "ref" / "steps").rglob("*.json"))) - finished
  assert json.loads((tmp_path / "run" / "result.json").read_text()) == result
  assert (tmp_path / "run" / "results.md").read_text() == (tmp_path / "ref" / "results.md").read_text()
