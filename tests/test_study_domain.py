"""experiments/domain_adaptation.py: the smoke study end to end (every arm x seed x test set in
result.json, intervals, a rerun that reuses every step and writes the same result), its full mode
wired (every arm's config loads and passes the pipeline's checks), and its AUC statistic."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from lcbm_jax.study import report
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train

import study_helpers

da = study_helpers.load("domain_adaptation")


def _run(*args):
  return study_helpers.run("domain_adaptation", *args)


@pytest.mark.slow
def test_smoke_study_has_every_arm_seed_and_test_set_and_resumes_to_the_same_result(tmp_path):
  work = tmp_path / "da"
  p = _run("--smoke", "--workdir", str(work))
  assert p.returncode == 0, p.stderr[-4000:]
  result = report.load_result(str(work / "result.json"))
  da.check_shape(result)
  assert result["arms"] == ["video_only", "in_domain", "no_behavior"] and result["seeds"] == da.SMOKE["seeds"]
  assert set(result["test_sets"]) == {"tweets_time", "tweets_brand", "reddit"}
  for test, metrics in da.TEST_METRICS.items():
    assert result["test_sets"][test]["items"] == da.SMOKE["eval_items"], test
    for m in metrics:
      key = f"{test}/{m}"
      for arm in result["arms"]:
        assert np.isfinite(result["metrics"][key][arm]["mean"]), (key, arm)
      assert result["baselines"][key]["chance"] == da.METRICS[m][2]
  for arm in result["arms"]:
    for seed in result["runs"][arm].values():
      assert seed["steps"] == da.SMOKE["steps"] and seed["seen"]["loss_tokens"] > 0
  # Accuracy's baseline is the majority class, a share of the items; both tweet splits hold both levels.
  for test in ("tweets_time", "tweets_brand"):
    assert 0.5 <= result["baselines"][f"{test}/accuracy"]["majority"] < 1.0
  text = (work / "results.md").read_text()
  assert "video-only − no behavior" in text and "in-domain − video-only" in text and "majority class" in text
  for png in ("domain_adaptation.png", "learning_curves.png"):
    assert (work / png).stat().st_size > 0
  # Step outputs are per item, so intervals can be recomputed: 0/1 hits for accuracy.
  ev = json.loads((work / "steps" / "seed0" / "video_only" / "eval.json").read_text())
  assert {v[0] for v in ev["tweets_time"]["values"]} <= {0.0, 1.0}

  before = (work / "result.json").read_bytes()
  doc = tmp_path / "results.md"
  doc.write_text("# Results\n\nkept\n")
  p = _run("--smoke", "--workdir", str(work), "--results-md", str(doc))
  assert p.returncode == 0, p.stderr[-4000:]
  assert "9 step(s) reused" in p.stdout and "0 run now" in p.stdout, p.stdout[-2000:]
  assert (work / "result.json").read_bytes() == before
  block = report.read_block(doc.read_text(), da.NAME)
  assert doc.read_text().startswith("# Results\n\nkept\n") and block == text.strip()


def test_full_mode_is_wired(tmp_path):
  """Each arm's full-mode config loads with its overrides and passes the data pipeline's build-time checks."""
  want = {"video_only": (("behavior_simulation",), False, "videos"),
          "in_domain": (("likes_high_low", "blift"), False, "social"),
          "no_behavior": (("behavior_simulation",), True, "videos")}
  for arm, (tasks, content_only, group) in want.items():
    config = config_lib.load(da._config_path(da.FULL), da.arm_overrides(str(tmp_path), da.FULL, arm, seed=2))
    assert config.data.tasks == tasks and config.data.content_only is content_only
    assert config.data.dir == str(tmp_path / "data" / group) and config.seed == 2
    assert config.num_steps == da.FULL["steps"] and config.model.preset == "demo"
    assert config.data.tokenizer == str(tmp_path / "tokenizer")
    train.pipeline_config(config, train.model_config(config), config.data.tokenizer).validate()
  assert len(da.FULL["seeds"]) >= 3


def test_auc_is_the_mann_whitney_u_over_pairs():
  rng = np.random.default_rng(0)
  label = (rng.uniform(size=(3, 50)) < 0.3).astype(float)
  score = np.round(rng.normal(size=(3, 50)) + label, 1)   # rounded: ties count half
  auc = da.AUC(np.stack([score, label], -1))
  for i in range(3):
    pos, neg = score[i][label[i] == 1], score[i][label[i] == 0]
    u = scipy.stats.mannwhitneyu(pos, neg).statistic
    assert auc[i] == pytest.approx(u / (len(pos) * len(neg)))
  assert np.isnan(da.AUC(np.stack([score[0], np.zeros(50)], -1)))
