"""Evaluation metrics pinned on hand-computed values, parity with nltk / rouge-score / scipy,
parsers fed garbage, and baselines fitted on a small synthetic training split."""
import collections
import math

import numpy as np
import pytest

from lcbm_jax.evaluation import behavior, content, optimize


# ---------------------------------------------------------------- behavior metrics, by hand


def test_rmse_r2_by_hand():
  assert behavior.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
  # mean(true) = 7/3, SS_tot = 42/9, SS_res = 1  ->  R2 = 1 - 9/42
  assert behavior.r2([1, 2, 3], [1, 2, 4]) == pytest.approx(1 - 9 / 42)
  assert behavior.r2([5, 5, 5], [1, 2, 3]) == pytest.approx(1 - 29 / 2)  # SS_res = 16+9+4: worse than the mean
  assert math.isnan(behavior.r2([1, 2], [3, 3]))


def test_replay_accuracy_within_5_and_unparseable():
  pred = [[10, 20], [math.nan, 50, 45.0]]
  true = [[15, 26], [30, 50, 40]]
  m = behavior.replay_metrics(pred, true, fallback_scenes=[[0, 0], [30, 0, 0]])
  # |err| = 5 (ok, boundary), 6, unparseable (wrong), 0, 5 (ok)
  assert m["acc_within_5"] == pytest.approx(3 / 5)
  assert m["unparseable"] == 1 and m["n"] == 5
  # the unparseable scene takes its fallback (30 = exact), so squared errors 25, 36, 0, 0, 25
  assert m["rmse"] == pytest.approx(math.sqrt(86 / 5))
  with pytest.raises(ValueError):
    behavior.replay_metrics([[1]], [[1, 2]])


def test_within_10pct_and_regression_metrics():
  assert behavior.within_rel([100, 110, 111, 89, math.nan], [100] * 5) == pytest.approx(2 / 5)
  m = behavior.regression_metrics([2.0, math.nan, 3.3], [2.0, 4.0, 3.0], fallback=4.0)
  assert m["acc_within_10pct"] == pytest.approx(2 / 3)
  assert m["unparseable"] == 1
  assert m["rmse"] == pytest.approx(math.sqrt(0.09 / 3))
  views = behavior.regression_metrics([999.0, 99.0], [999.0, 9999.0], fallback=0.0, log10=True)
  assert views["rmse"] == pytest.approx(math.sqrt((2.0 ** 2) / 2))  # log10(100) vs log10(10000)


def test_label_accuracy():
  m = behavior.accuracy(["high", None, "low", "low"], ["high", "low", "high", "low"])
  assert m == {"accuracy": 0.5, "unparseable": 1, "n": 4}


# ---------------------------------------------------------------- parsers


def test_parsers_read_every_template_format():
  target = "Scene 2: {Replay: 60%}, Scene 5: {Replay: 7%}, Views: 2.1 Million, Likes-per-View: 2.5%"
  parsed = behavior.parse_lcbm_target(target)
  assert parsed["replay"] == {1: 60.0, 4: 7.0}  # 0-based scene index
  assert parsed["views"] == pytest.approx(2.1e6)
  assert parsed["likes_per_view"] == pytest.approx(2.5)
  assert behavior.parse_views("346 thousand") == pytest.approx(346e3)
  assert behavior.parse_views("1.2 Billion") == pytest.approx(1.2e9)
  assert behavior.parse_views("950") == 950
  blift = ("Scene 1: a dog runs\nScene 2: a cat\n>>> BEHAVIOR <<<\nThe video will be liked by 2.0% of viewers\n"
           "The post will receive 346 thousand upvotes.\nReplays: Scene 1: 0.06, Scene 2: 0.40")
  assert behavior.parse_blift_liked(blift) == pytest.approx(2.0)
  assert behavior.parse_blift_replays(blift) == {0: 0.06, 1: 0.4}
  assert behavior.parse_blift_upvotes(blift) == pytest.approx(346e3)
  assert behavior.parse_like_level("This tweet has low likes.") == "low"
  assert behavior.parse_like_level("HIGH") == "high"
  assert behavior.parse_like_level("medium likes", behavior.LIKE_LEVELS) == "medium"
  assert behavior.parse_scene_number("Scene 3 is the most replayed (Replays: 80) because it shows a star.") == 3
  assert behavior.parse_sentiment('Negative, because people wrote "so sad".') == "negative"


@pytest.mark.parametrize("garbage", [
    "", "Scene", "Scene 2: {Replay: abc}", "Scene 2: {Replay: 250%}", "\x00\xff\ufffd", "Views: lots",
    "Likes-per-View: 300%", "highlights and lowlights", "liked by many", None, 123, "[MASK] " * 50,
])
def test_parsers_never_crash_on_garbage(garbage):
  assert behavior.parse_lcbm_replays(garbage) == {}
  assert behavior.parse_blift_replays(garbage) == {}
  assert math.isnan(behavior.parse_views(garbage))
  assert math.isnan(behavior.parse_likes_per_view(garbage))
  assert math.isnan(behavior.parse_blift_liked(garbage))
  assert math.isnan(behavior.parse_blift_upvotes(garbage))
  assert behavior.parse_like_level(garbage) is None
  assert behavior.parse_scene_number(garbage) == (2 if isinstance(garbage, str) and "Scene 2" in garbage else None)
  assert behavior.parse_sentiment(garbage) is None
  parsed = behavior.parse_lcbm_target(garbage)
  pred, true = behavior.align_replays(parsed["replay"], {1: 40.0, 2: 60.0})
  m = behavior.replay_metrics([pred], [true])
  assert m["unparseable"] == 2 and m["acc_within_5"] == 0.0


# ---------------------------------------------------------------- baselines from a training split


def test_baselines_fit_on_training_split():
  train = [{0: 10.0, 1: 20.0}, {0: 30.0, 1: 40.0, 2: 90.0}]
  base = behavior.ReplayBaseline(train)
  assert base.global_mean == pytest.approx(38.0)
  assert base.predict_position([0, 1, 2, 7]) == pytest.approx([20.0, 30.0, 90.0, 38.0])
  assert base.predict_global([0, 3]) == pytest.approx([38.0, 38.0])
  assert behavior.majority_label(["low", "high", "low", None]) == "low"
  assert behavior.majority_label(["low", "high"]) == "low"  # tie -> the lower level, deterministically
  assert behavior.mean_baseline([1.0, None, 3.0, math.nan]) == pytest.approx(2.0)
  with pytest.raises(ValueError):
    behavior.ReplayBaseline([])
  rand = behavior.random_replay_predictions([[1, 2, 3]] * 200, np.random.default_rng(0))
  flat = np.concatenate(rand)
  assert flat.min() >= 0 and flat.max() <= 100 and 40 < flat.mean() < 60


# ---------------------------------------------------------------- generation metrics


def test_bleu_rouge_by_hand():
  hyp, ref = "The cat sat on the mat.", "the cat is on the mat"
  b = content.bleu([hyp], [ref])
  # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3, equal lengths -> BP = 1
  assert b["bleu1"] == pytest.approx(5 / 6)
  assert b["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
  assert b["bleu3"] == pytest.approx(0.5)
  assert b["bleu4"] == 0.0
  assert content.rouge_l([hyp], [ref]) == pytest.approx(5 / 6)  # LCS = 5 of 6 either way
  short = content.bleu(["a b c"], ["a b c d e"])
  assert short["bleu1"] == pytest.approx(math.exp(1 - 5 / 3))  # brevity penalty only
  # ROUGE-L: LCS("a b c", "a x c b") = 2 -> P = 2/3, R = 2/4
  assert content.rouge_l(["a b c"], ["a x c b"]) == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
  assert content.rouge_l(["!!!"], ["a"]) == 0.0


def _random_sentences(rng, n):
  vocab = "the cat sat on a mat".split()  # small vocabulary: 3- and 4-gram matches happen
  return [" ".join(rng.choice(vocab, size=rng.integers(1, 14))) for _ in range(n)]


def test_bleu_rouge_parity_with_nltk_and_rouge_score():
  from nltk.translate.bleu_score import corpus_bleu
  from rouge_score import rouge_scorer

  rng = np.random.default_rng(0)
  hyps, refs = _random_sentences(rng, 40), _random_sentences(rng, 40)
  ours = content.bleu(hyps, refs)
  assert ours["bleu4"] > 0.05
  for n in range(1, 5):
    ref_score = corpus_bleu([[content.tokenize(r)] for r in refs], [content.tokenize(h) for h in hyps],
                            weights=(1 / n,) * n)
    assert ours[f"bleu{n}"] == pytest.approx(ref_score, abs=1e-9), n
  scorer = rouge_scorer.RougeScorer(["rougeL"])
  ref_rouge = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)])
  assert content.rouge_l(hyps, refs) == pytest.approx(ref_rouge, abs=1e-12)


# ---------------------------------------------------------------- scoring-based tasks


def _fake_score_fn(prompts, continuations, images):
  # log-likelihood = -(distance between the continuation's first id and the prompt's last id)
  return np.array([-abs(c[0] - p[-1]) for p, c in zip(prompts, continuations)], dtype=np.float64)


def test_option_scores_and_choice_accuracy():
  prompts = [[1, 5], [7], [3]]
  options = [[[9], [5], [1]], [[7, 1], [2]], [[8], [9]]]
  scores = content.option_scores(_fake_score_fn, prompts, options, [None] * 3)
  assert [s.tolist() for s in scores] == [[-4, 0, -4], [0, -5], [-5, -6]]
  m = content.choice_accuracy(scores, [1, 0, 1])
  assert m["accuracy"] == pytest.approx(2 / 3)
  assert m["random"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
  norm = content.option_scores(_fake_score_fn, [[1]], [[[3, 3], [2]]], [None], length_normalize=True)
  assert norm[0].tolist() == [-1.0, -1.0]


def test_label_accuracy_and_memorability_spearman():
  import scipy.stats

  m = content.label_accuracy([np.array([0.0, -1.0]), np.array([-3.0, -1.0])], ["happy", "sad"], ["happy", "happy"])
  assert m["accuracy"] == 0.5 and m["random"] == 0.5
  rng = np.random.default_rng(1)
  a, b = rng.integers(0, 5, size=30), rng.normal(size=30)  # ties in a
  assert content.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
  # a model that puts all its mass on the true two-digit label gets a perfect rank correlation
  true = [12.0, 80.0, 45.0, 3.0]
  scores = [np.where(np.arange(100) == int(t), 0.0, -50.0) for t in true]
  assert content.expected_label_value(scores[0], range(100)) == pytest.approx(12.0, abs=1e-6)
  assert content.memorability_spearman(scores, true)["spearman"] == pytest.approx(1.0)


# ---------------------------------------------------------------- behavior optimization


def test_top1_hit_rate():
  predicted = [0.1, 0.9, 0.5, 2.0, 1.0, 7.0]
  true = [1.0, 5.0, 3.0, 1.0, 9.0, 0.0]
  groups = ["a", "a", "a", "b", "b", "c"]  # c has one candidate: not a choice, left out
  m = optimize.top1_hit_rate(predicted, true, groups)
  assert m["groups"] == 2 and m["top1_hit"] == 0.5
  assert m["random"] == pytest.approx((1 / 3 + 1 / 2) / 2)
  assert m["spearman"] == pytest.approx((1.0 + -1.0) / 2)
  assert optimize.high_low_margin([-0.1], [-2.0]).tolist() == pytest.approx([1.9])


# ---------------------------------------------------------------- run.py pieces on a tiny model and corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A tiny built corpus (every split), its tokenizer and a random tiny model."""
  import pipeline_helpers
  from data_pipeline.tokenizer import Tokenizer
  from eval_helpers import random_params
  from lcbm_jax.model import presets

  root = str(tmp_path_factory.mktemp("eval_corpus"))
  data_dir, tok_dir = pipeline_helpers.build_tiny(root, EVAL_COUNTS)
  cfg = presets.get("tiny")
  return cfg, random_params(cfg), Tokenizer.load(tok_dir), data_dir


EVAL_COUNTS = {("cbc", "train"): 12, ("cbc", "test"): 4, ("blift", "train"): 10, ("blift", "test"): 3,
               ("tweets", "train"): 40, ("tweets", "test_time"): 6, ("tweets", "test_brand"): 4}


def test_prefix_shared_option_scores_match_inference_score(tiny):
  from lcbm_jax import inference
  from lcbm_jax.evaluation import run

  cfg, params, _, _ = tiny
  rng = np.random.default_rng(0)
  n_img = cfg.num_image_tokens
  prompts = [[1, *rng.integers(10, 400, 7)], [1, *[cfg.image_token_id] * n_img, *rng.integers(10, 400, 30)]]
  options = [[[5, 6, 7], [8], [3, 3]], [[9], [10, 11], [12, 13, 14, 15, 16]]]
  images = rng.normal(size=(2, cfg.max_images, cfg.vision.image_size, cfg.vision.image_size, 3)).astype(np.float32)
  got = run.score_options_batch(cfg, params, prompts, options, images, k=4)
  pairs = [(i, o) for i, opts in enumerate(options) for o in opts]   # one inference.score call, one compile
  want = inference.score(cfg, params, [prompts[i] for i, _ in pairs], [o for _, o in pairs],
                         images[[i for i, _ in pairs]]).total
  np.testing.assert_allclose(np.concatenate([got[i, :len(opts)] for i, opts in enumerate(options)]), want,
                             rtol=1e-4, atol=1e-4)


def test_parsers_read_the_verbalized_targets(tiny):
  """Golden round trip: what the templates write (data_pipeline.verbalize) parses back to the answer."""
  from data_pipeline import pipeline, verbalize

  _, _, tok, data_dir = tiny
  corpus = pipeline.Corpus(data_dir, "test")
  seen = set()
  for i in range(len(corpus)):
    r = corpus[i]
    for task in ("behavior_simulation", "blift"):
      if not verbalize.applies(r, task, corpus.context):
        continue
      v = verbalize.verbalize(r, task, rng=np.random.default_rng(i), max_images=4, context=corpus.context)
      a = v.answer
      if task == "behavior_simulation":
        p = behavior.parse_lcbm_target(v.target)
        assert p["replay"] == dict(enumerate(float(x) for x in a["replay"]))
        assert abs(p["views"] - a["views"]) <= _words_error(a["views"])
        assert p["likes_per_view"] == pytest.approx(a["likes_per_view"], abs=0.05)
      elif a["replay"] is not None:
        assert behavior.parse_blift_replays(v.target) == pytest.approx(dict(enumerate(a["replay"])))
        assert behavior.parse_blift_liked(v.target) == pytest.approx(a["likes_percent"], abs=0.05)
      else:
        assert abs(behavior.parse_blift_upvotes(v.target) - a["upvotes"]) <= _words_error(a["upvotes"])
      seen.add((task, a["replay"] is None if task == "blift" else None))
  assert len(seen) == 3


def _words_error(x: float) -> float:
  """Rounding of numbers in words: whole thousands, or millions/billions with one decimal."""
  return 0.5 if x < 1e3 else 500 if x < 1e6 - 5e4 else 0.05 * (1e6 if x < 1e9 else 1e9)


class _OracleRunner:
  """Generates each example's reference target: every model metric must come out perfect."""

  def __init__(self, runner, targets):
    self.runner, self.targets, self.tok, self.cfg = runner, targets, runner.tok, runner.cfg

  def generate(self, prompts, images, max_new_tokens, desc):
    return [self.targets[tuple(int(t) for t in p)] for p in prompts]

  def score_options(self, *args):
    return self.runner.score_options(*args)


def test_oracle_generations_score_perfectly(tiny, monkeypatch):
  from data_pipeline import pipeline
  from lcbm_jax.evaluation import run

  cfg, params, tok, data_dir = tiny
  targets = {}
  for split in ("test", "test_time", "test_brand"):
    for task in ("behavior_simulation", "kbft", "likes_high_low", "tweet_generation", "blift",
                 "behavior_understanding"):
      variants = [{"regime": r} for r in ("past", "future", "random")] if task == "kbft" else [{}]
      for opts in variants:
        try:
          for e in pipeline.eval_examples(data_dir, split, task, tokenizer=tok, image_size=cfg.vision.image_size,
                                          max_images=cfg.max_images, num_image_tokens=cfg.num_image_tokens, **opts):
            targets[tuple(int(t) for t in e.prompt_ids)] = e.verbalized.target
        except Exception as err:  # a split some corpus lacks
          assert "split" in str(err)
  real_runner = run.Runner
  monkeypatch.setattr(run, "Runner", lambda *a, **k: _OracleRunner(real_runner(*a, **k), targets))
  res = run.evaluate(cfg, params, tok, data_dir, ["behavior_simulation", "kbft", "likes_high_low",
                                                  "tweet_generation", "blift", "behavior_understanding"],
                     max_examples=3)
  for row in ("behavior_simulation", "kbft/past", "kbft/random", "blift"):
    assert res[row]["replay_rmse"]["model"] == 0.0, row
    assert res[row]["replay_acc<=5"]["model"] == 1.0, row
    assert res[row]["replay_unparseable"]["model"] == 0, row
  bs = res["behavior_simulation"]
  # Views and upvotes in words lose precision ("1 thousand" for 1221), so only near-perfect.
  assert bs["views_unparseable"]["model"] == 0 and bs["views_log10_r2"]["model"] > 0.95
  assert bs["likes_per_view_rmse"]["model"] < 0.05 and bs["likes_per_view_unparseable"]["model"] == 0
  # The position-mean baseline, recomputed by hand from the TRAIN split's raw replay values.
  train = pipeline.Corpus(data_dir, "train")
  sums, counts = collections.defaultdict(float), collections.defaultdict(int)
  for r in (train[i] for i in range(len(train))):
    for pos, v in enumerate(r.behavior.replay or ()):
      sums[pos] += math.floor(v + 0.5)
      counts[pos] += 1
  errs = [sums[pos] / counts[pos] - truth
          for e in pipeline.eval_examples(data_dir, "test", "behavior_simulation", tokenizer=tok, max_examples=3,
                                          image_size=cfg.vision.image_size, num_image_tokens=cfg.num_image_tokens)
          for pos, truth in enumerate(e.answer["replay"])]
  assert bs["replay_rmse"]["baselines"]["position_mean"] == pytest.approx(math.sqrt(np.mean(np.square(errs))))
  assert bs["replay_rmse"]["n"] == len(errs)
  assert res["likes_high_low/time"]["accuracy"]["model"] == 1.0
  assert res["behavior_understanding/replay"]["accuracy"]["model"] == 1.0
  assert res["behavior_understanding/sentiment"]["accuracy"]["model"] == 1.0
  assert res["tweet_generation"]["bleu4"]["model"] == pytest.approx(1.0)
  assert res["tweet_generation"]["rougeL"]["model"] == pytest.approx(1.0)
  assert res["blift"]["upvotes_unparseable"]["model"] == 0 and res["blift"]["upvotes_log10_r2"]["model"] > 0.9
  assert res["blift"]["liked_percent_rmse"]["model"] < 0.05


def test_runner_scores_more_options_than_one_call_holds(tiny):
  """100-way labels (memorability) are split into chunks of run._ROWS_PER_CALL; nothing is lost or mixed."""
  from lcbm_jax import inference
  from lcbm_jax.evaluation import run

  cfg, params, tok, _ = tiny
  runner = run.Runner(cfg, params, tok)
  prompts = [[1, 20, 30, 40], [1, 50, 60]]
  options = [[[t] for t in range(100, 170)], [[7, 8], [9]]]   # 70 options, then 2
  got = runner.score_options(prompts, options, [np.zeros((0,))] * 2, "test")
  assert [len(g) for g in got] == [70, 2]
  want = inference.score(cfg, params, [prompts[0]] * 70 + [prompts[1]] * 2, options[0] + options[1]).total
  np.testing.assert_allclose(np.concatenate(got), want, rtol=1e-4, atol=1e-4)


def test_replay_probe_slope_matches_fixed_effects_least_squares():
  """experiments/replay_probe.py's within-video slope = the feature coefficient of an OLS fit with one
  dummy per video (numpy lstsq as the reference), and 0 when predictions ignore the feature."""
  import importlib.util
  import os
  spec = importlib.util.spec_from_file_location(
      "replay_probe", os.path.join(os.path.dirname(__file__), "..", "experiments", "replay_probe.py"))
  probe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(probe)
  rng = np.random.default_rng(0)
  video = np.repeat(np.arange(12), rng.integers(1, 8, 12))
  x = rng.integers(0, 2, len(video)).astype(float)
  y = 3.0 * x + rng.normal(0, 1, 12)[video] * 5 + rng.normal(0, 0.5, len(video))
  design = np.column_stack([x, np.eye(12)[video]])
  reference = np.linalg.lstsq(design, y, rcond=None)[0][0]
  assert abs(probe.within_video_slope(y, x, video) - reference) < 1e-9
  assert abs(reference - 3.0) < 0.5
  per_video_only = rng.normal(0, 1, 12)[video]   # a model that predicts one value per video
  assert abs(probe.within_video_slope(per_video_only, x, video)) < 1e-12


def test_replay_paired_bootstrap_matches_scipy():
  """Video-level paired bootstrap CI of (model - baseline) RMSE and accuracy agrees with
  scipy.stats.bootstrap (paired, percentile) on the same per-video sums; a model equal to the
  baseline gets an interval of exactly 0, a much better one an interval below 0."""
  from scipy import stats
  rng = np.random.default_rng(1)
  true = [rng.uniform(20, 80, rng.integers(1, 8)) for _ in range(60)]
  base = [t + rng.normal(0, 12, t.size) for t in true]
  pred = [t + rng.normal(0, 6, t.size) for t in true]
  pred[3] = pred[3].copy()
  pred[3][0] = np.nan   # unparseable: baseline value for RMSE, wrong for accuracy
  ci = behavior.replay_paired_bootstrap(pred, base, true, np.random.default_rng(0), n_boot=20000)
  filled = [np.where(np.isnan(p), b, p) for p, b in zip(pred, base)]
  sse_m = np.array([np.sum((p - t) ** 2) for p, t in zip(filled, true)])
  sse_b = np.array([np.sum((b - t) ** 2) for b, t in zip(base, true)])
  hit_m = np.array([np.sum(np.abs(p - t) <= 5) for p, t in zip(pred, true)])   # NaN compares False
  hit_b = np.array([np.sum(np.abs(b - t) <= 5) for b, t in zip(base, true)])
  cnt = np.array([t.size for t in true], float)

  def d_rmse(a, b, c, axis=-1):
    return np.sqrt(a.sum(axis) / c.sum(axis)) - np.sqrt(b.sum(axis) / c.sum(axis))

  def d_acc(a, b, c, axis=-1):
    return (a.sum(axis) - b.sum(axis)) / c.sum(axis)

  for key, fn, data in (("rmse", d_rmse, (sse_m, sse_b, cnt)), ("acc_within_5", d_acc, (hit_m, hit_b, cnt))):
    ref = stats.bootstrap(data, fn, paired=True, vectorized=True, n_resamples=20000, method="percentile",
                          random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert abs(ci[key][0] - ref.low) < 0.05 * width and abs(ci[key][1] - ref.high) < 0.05 * width, (ci[key], ref)
  assert ci["rmse"][1] < 0 and ci["acc_within_5"][0] > 0 and ci["videos"] == 60
  same = behavior.replay_paired_bootstrap(base, base, true, np.random.default_rng(0))
  assert same["rmse"] == (0.0, 0.0) and same["acc_within_5"] == (0.0, 0.0)
