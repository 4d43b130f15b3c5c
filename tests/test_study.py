"""The study library: the hierarchical bootstrap against scipy, the runner's reuse and refusal, a
study SIGKILLed midway and restarted, and the docs block a result renders into."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.stats

from lcbm_jax.errors import UserError
from lcbm_jax.study import report, stats
from lcbm_jax.study.runner import Study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("statistic", ["mean", "rmse", "spearman"])
def test_one_seed_is_scipys_paired_percentile_bootstrap(statistic):
  """With one seed, resampling seeds then items is the paired bootstrap over items: both intervals agree
  to within Monte Carlo error (different random streams), for every statistic."""
  rng = np.random.default_rng(0)
  n = 240
  if statistic == "mean":
    a, c = (rng.uniform(size=n) < 0.62).astype(float)[:, None], (rng.uniform(size=n) < 0.5).astype(float)[:, None]
  elif statistic == "rmse":
    a, c = rng.normal(0, 1.0, (n, 1)) ** 2, rng.normal(0, 1.2, (n, 1)) ** 2
  else:
    truth = rng.normal(size=n)
    a = np.stack([truth + rng.normal(0, 1.0, n), truth], -1)
    c = np.stack([truth + rng.normal(0, 2.0, n), truth], -1)
  fn = stats.STATISTICS[statistic]
  ours = stats.hierarchical_bootstrap(a[None], c[None], fn, n_boot=4000)

  def diff(x, y, axis=-1):
    # scipy hands [fields, ..., items] (items last); our statistic wants [..., items, fields].
    return fn(np.moveaxis(x, 0, -1)) - fn(np.moveaxis(y, 0, -1))

  ref = scipy.stats.bootstrap((a.T, c.T), diff, paired=True, vectorized=True, n_resamples=4000, axis=-1,
                              method="percentile", rng=np.random.default_rng(1)).confidence_interval
  width = ref.high - ref.low
  assert abs(ours["ci95"][0] - ref.low) < 0.12 * width and abs(ours["ci95"][1] - ref.high) < 0.12 * width, (ours, ref)
  assert ours["estimate"] == pytest.approx(float(fn(a) - fn(c)))
  if statistic == "spearman":
    assert float(fn(a)) == pytest.approx(scipy.stats.spearmanr(a[:, 0], a[:, 1]).statistic)


def test_seed_to_seed_spread_widens_the_interval():
  """Three seeds whose arms differ by +0.2, 0.0 and -0.2 on the same items: resampling seeds gives a wide
  interval around 0, where pooling the items alone would claim a clear effect."""
  rng = np.random.default_rng(1)
  n = 400
  control = (rng.uniform(size=(3, n)) < 0.5).astype(float)
  arm = np.stack([(rng.uniform(size=n) < p).astype(float) for p in (0.75, 0.55, 0.35)])
  boot = stats.hierarchical_bootstrap(arm, control)
  pooled = stats.hierarchical_bootstrap(arm.reshape(1, -1), control.reshape(1, -1))
  assert boot["ci95"][1] - boot["ci95"][0] > 3 * (pooled["ci95"][1] - pooled["ci95"][0])
  assert not boot["excludes_null"] and boot["mde"] > 0.2


def test_interval_against_chance_and_the_mde():
  rng = np.random.default_rng(2)
  hits = (rng.uniform(size=(3, 200)) < 0.7).astype(float)
  boot = stats.hierarchical_bootstrap(hits, None, stats.MEAN, null=0.25)
  assert boot["excludes_null"] and boot["ci95"][0] > 0.3
  assert boot["estimate"] == pytest.approx(hits.mean() - 0.25)
  assert stats.minimal_detectable_effect(0.01) == pytest.approx(0.01 * (1.959964 + 0.841621), rel=1e-5)
  assert stats.seed_summary([0.5, 0.7])["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
  text = report.interval(stats.hierarchical_bootstrap(hits, hits))
  assert "null; MDE" in text


def test_steps_are_reused_and_another_spec_is_refused(tmp_path):
  calls = []
  study = Study(str(tmp_path), "s", {"seeds": [0, 1]}, log=lambda m: None)
  assert study.step("seed0/a", lambda: calls.append(1) or {"x": 1}) == {"x": 1}
  again = Study(str(tmp_path), "s", {"seeds": [0, 1]}, log=lambda m: None)
  assert again.step("seed0/a", lambda: calls.append(2) or {"x": 2}) == {"x": 1}
  assert calls == [1] and again.reused == ["seed0/a"] and again.ran == []
  with pytest.raises(UserError, match="seeds differ"):
    Study(str(tmp_path), "s", {"seeds": [0, 1, 2]})
  with pytest.raises(ValueError):
    study.step("../escape", dict)


_KILLABLE = textwrap.dedent("""
  import json, sys, time
  sys.path.insert(0, sys.argv[2])
  from lcbm_jax.study.runner import Study
  study = Study(sys.argv[1], "toy", {"runs": 6})
  out = []
  for i in range(6):
    def run(i=i):
      time.sleep(0.4)   # a run takes a while: the kill lands inside one
      return {"run": i, "value": i * i}
    out.append(study.step(f"run{i}", run))
  print(study.summary())
  print(json.dumps(out))
""")


def test_a_study_killed_midway_reuses_finished_runs_and_ends_the_same(tmp_path):
  args = [sys.executable, "-c", _KILLABLE]
  ref = subprocess.run(args + [str(tmp_path / "ref"), ROOT], capture_output=True, text=True, timeout=120)
  assert ref.returncode == 0, ref.stderr
  proc = subprocess.Popen(args + [str(tmp_path / "run"), ROOT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  steps = tmp_path / "run" / "steps"
  deadline = time.time() + 60
  while len(list(steps.glob("run*.json")) if steps.exists() else []) < 2 and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  finished = len(list(steps.glob("run*.json")))
  assert 2 <= finished < 6
  again = subprocess.run(args + [str(tmp_path / "run"), ROOT], capture_output=True, text=True, timeout=120)
  assert again.returncode == 0, again.stderr
  assert f"{finished} step(s) reused" in again.stdout and f"{6 - finished} run now" in again.stdout
  assert again.stderr.count("reused run") == finished and again.stderr.count("running run") == 6 - finished
  assert json.loads(again.stdout.splitlines()[-1]) == json.loads(ref.stdout.splitlines()[-1])


def test_a_block_is_replaced_in_place_and_read_back():
  doc = "# Results\n\nintro\n"
  once = report.replace_block(doc, "free_lunch", "| a |\n|---|")
  twice = report.replace_block(once + "\n## after\n", "free_lunch", "| b |\n|---|")
  assert report.read_block(twice, "free_lunch") == "| b |\n|---|"
  assert twice.count("<!-- study:free_lunch -->") == 1 and twice.rstrip().endswith("## after")
