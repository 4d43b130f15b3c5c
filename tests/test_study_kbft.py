"""experiments/lcbm_kbft.py: the smoke study end to end (every arm x seed x regime in result.json, intervals,
a rerun that reuses every step and writes the same result), its full mode wired (every run's config loads
with its k and passes the pipeline's checks), the scoring of a generation, and `data.kbft_k` reaching the
training windows."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_pipeline import commands, pipeline, tokenizer as tokenizer_lib, verbalize, world
from lcbm_jax.errors import UserError
from lcbm_jax.evaluation import behavior
from lcbm_jax.study import report
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train

import study_helpers

kb = study_helpers.load("lcbm_kbft")


def _run(*args):
  return study_helpers.run("lcbm_kbft", *args)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  work = tmp_path_factory.mktemp("kbft") / "study"
  p = _run("--smoke", "--workdir", str(work))
  assert p.returncode == 0, p.stderr[-4000:]
  return work, p


@pytest.mark.slow
def test_smoke_study_has_every_arm_seed_and_regime_and_resumes_to_the_same_result(smoke, tmp_path):
  work, p = smoke
  result = report.load_result(str(work / "result.json"))
  kb.check_shape(result)
  assert result["arms"] == list(kb.SMOKE["arms"]) and result["seeds"] == kb.SMOKE["seeds"]
  assert result["regimes"] == list(kb.REGIMES) and result["k"] == {"bft": 0, "k3": 3}
  for regime, r in result["replay"].items():
    assert r["videos"] == kb.SMOKE["eval_videos"], regime
    for arm in result["arms"]:
      assert np.isfinite(r["arms"][arm]["rmse_per_video"]["mean"])
    # Random guesses are far off; the per-scene mean is what an unwritten replay falls back to.
    assert r["baselines"]["random"]["rmse_pooled"] > r["baselines"]["position_mean"]["rmse_pooled"]
  for arm in [*result["arms"], "base"]:
    for seen in result["seen"][arm].values():
      assert seen["loss_tokens"] > 0 and seen["images"] > 0
  assert "| regime | arm | RMSE / video |" in p.stdout and "k-BFT k=3" in p.stdout
  # Step outputs are per test video, so intervals can be recomputed from them.
  ev = json.loads((work / "steps" / "k3" / "seed0" / "eval.json").read_text())
  assert set(ev) == set(kb.REGIMES)
  for regime in kb.REGIMES:
    assert len(ev[regime]["videos"]) == kb.SMOKE["eval_videos"]
    assert all(set(v) == {"sse", "hits", "n", "unparseable"} for v in ev[regime]["videos"])
  assert len(ev["bsim"]["views"]) == len(ev["bsim"]["likes_per_view"]) == kb.SMOKE["eval_videos"]
  for png in ("lcbm_kbft_rmse.png", "lcbm_kbft_curves.png"):
    assert (work / png).stat().st_size > 0

  before = (work / "result.json").read_bytes()
  doc = tmp_path / "results.md"
  doc.write_text("# Results\n\nkept\n")
  p = _run("--smoke", "--workdir", str(work), "--results-md", str(doc))
  assert p.returncode == 0, p.stderr[-4000:]
  steps = len(kb._step_keys(kb.SMOKE))
  assert f"{steps} step(s) reused" in p.stdout and "0 run now" in p.stdout, p.stdout[-2000:]
  assert (work / "result.json").read_bytes() == before
  block = report.read_block(doc.read_text(), kb.NAME)
  assert doc.read_text().startswith("# Results\n\nkept\n") and block == (work / "results.md").read_text().strip()


@pytest.mark.slow
def test_a_generation_that_writes_the_truth_scores_zero(smoke):
  """The scoring path on the smoke study's own test videos: the target text, read back as a generation,
  has no error in any regime; an empty one falls back to the per-scene mean and scores no hit. The few-shot
  prefix holds the shots' answers and no image."""
  work, _ = smoke
  cfg = train.model_config(config_lib.load(kb._config_spec(kb.SMOKE)))
  data = kb._eval_data(str(work), kb.SMOKE, cfg, tokenizer_lib.load(str(work / "tokenizer")))
  for regime in kb.REGIMES:
    ex = kb._examples(data, regime)
    assert len(ex) == kb.SMOKE["eval_videos"]
    for e in ex:
      assert e.verbalized.target.startswith(kb.first_label(e, regime))
      scenes, pred, true = kb._masked(e, regime, e.verbalized.target)
      assert pred == true and len(scenes) == len(true) >= 1
      assert kb._score(pred, true, [50.0] * len(true)) == {"sse": 0.0, "hits": len(true), "n": len(true),
                                                           "unparseable": 0}
      _, empty, _ = kb._masked(e, regime, "")
      s = kb._score(empty, true, [50.0] * len(true))
      assert s["hits"] == 0 and s["unparseable"] == len(true)
      assert s["sse"] == pytest.approx(float(np.sum((np.array(true) - 50.0) ** 2)))
    prefix = kb._shots(data, regime)
    assert verbalize.IMAGE not in prefix and prefix.count("Scene 1:") >= kb.SHOTS
  assert kb._shots(data, "past").count("Predict the masked replay values.") == kb.SHOTS


def test_full_mode_is_wired(tmp_path, capsys):
  """Every full-mode run's config loads with its overrides (its k, tasks, content-only flag) and passes the
  pipeline's build-time checks; the dry run lists every step and creates nothing."""
  assert len(kb.FULL["seeds"]) >= 3 and sorted(k for k in kb.FULL["arms"].values() if k) == list(verbalize.KBFT_K)
  root = str(tmp_path / "study")
  for arm, seed in kb.runs(kb.FULL):
    config = config_lib.load(kb._config_spec(kb.FULL), kb.arm_overrides(root, kb.FULL, arm, seed))
    assert config.seed == seed and config.num_steps == kb.FULL["steps"] and config.model.preset == "demo"
    assert config.data.dir == os.path.join(root, "data") and config.data.tokenizer == os.path.join(root, "tokenizer")
    if arm == "bft":
      assert config.data.tasks == ("behavior_simulation",) and config.data.kbft_k == 0
    elif arm == "base":
      assert config.data.tasks == ("behavior_simulation", "kbft") and config.data.content_only
    else:
      assert config.data.tasks == ("behavior_simulation", "kbft") and config.data.kbft_k == kb.FULL["arms"][arm]
      assert not config.data.content_only
    model_cfg = train.model_config(config)
    p = train.pipeline_config(config, model_cfg, config.data.tokenizer)
    p.validate()
    assert p.kbft_k == config.data.kbft_k
  # A 16-scene video with 8 keyframes of 4 image tokens fits the full config's 768-token rows.
  assert model_cfg.num_image_tokens == 4 and kb.FULL["scenes"][1] == 16 and config.data.seq_len == 768
  kb.dry_run(root, kb.FULL)
  out = capsys.readouterr().out
  assert all(f"to run {key}" in out for key in kb._step_keys(kb.FULL)) and out.count("preset demo") == 16
  assert not os.path.exists(root)


def test_kbft_k_fixes_every_training_window(tmp_path):
  """`data.kbft_k` reaches the Verbalize transform: every kbft sample masks exactly k scenes; 0 keeps the
  draw from KBFT_K (and the rng stream: the samples of the default transform)."""
  counts = {k: 0 for k in world.SIZES["small"]}
  counts[("cbc", "train")] = 12
  counts[("cbc", "test")] = 1
  corpus, data = str(tmp_path / "corpus"), str(tmp_path / "data")
  world.generate(corpus, seed=3, counts=counts, progress=False, scenes=(8, 12))
  commands.build_corpus("behavior_world", corpus, data)
  train_corpus = pipeline.Corpus(data, "train")

  def samples(**kw):
    t = pipeline.Verbalize((("kbft", 1.0),), train_corpus.context, 0, 4, False, **kw)
    out = []
    for i in range(len(train_corpus)):
      for epoch in range(3):
        out.append(t.map({"quarantine": "", "record": train_corpus[i], "epoch": epoch, "index": i})["verbalized"])
    return out

  fixed = samples(kbft_k=7)
  assert {len(v.answer["scenes"]) for v in fixed} == {7}
  drawn, default = samples(kbft_k=0), samples()
  assert [v.text for v in drawn] == [v.text for v in default]
  assert {len(v.answer["scenes"]) for v in drawn} <= {3, 5, 7, 8, 9, 10, 11} and len({len(v.answer["scenes"])
                                                                                     for v in drawn}) > 1
  with pytest.raises(UserError, match="kbft_k"):
    pipeline.PipelineConfig(data_dir=data, tokenizer="", tasks=(("kbft", 1.0),), kbft_k=-1).validate()


def test_statistics_match_their_definitions():
  """Per-video RMSE averages each video's own RMSE; pooled RMSE and accuracy pool the scenes; R2 is
  behavior.r2 row by row."""
  v = np.array([[[4.0, 1, 1], [18.0, 2, 0], [0.0, 3, 3]]])   # sse, n, hits per video
  assert kb.RMSE_PER_VIDEO(v)[0] == pytest.approx((2.0 + 3.0 + 0.0) / 3)
  assert kb.RMSE_POOLED(v)[0] == pytest.approx(np.sqrt(22.0 / 6))
  assert kb.ACCURACY(v)[0] == pytest.approx(4 / 6)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 40, 2))
  for i in range(3):
    assert kb.R2(x)[i] == pytest.approx(behavior.r2(x[i, :, 0], x[i, :, 1]))
  assert np.isnan(kb.R2(np.stack([x[0, :, 0], np.ones(40)], -1)))
