"""Evaluation metrics (nltk BLEU, rouge-score ROUGE-L, scipy Spearman and bootstrap underneath)
pinned on hand-computed values, parsers fed garbage, and baselines fitted on a small synthetic
training split."""
import collections
import math
import sys
import warnings

import numpy as np
import pytest

from data_pipeline import verbalize
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
  parsed = verbalize.parse_behavior_simulation(target)
  assert verbalize.parse_replays(target) == {1: 60.0, 4: 7.0}  # 0-based scene index
  assert parsed["replay"] == (None, 60.0, None, None, 7.0)   # indexed by scene, None where missing
  assert parsed["views"] == pytest.approx(2.1e6)
  assert parsed["likes_per_view"] == pytest.approx(2.5)
  assert verbalize.parse_views("346 thousand") == pytest.approx(346e3)
  assert verbalize.parse_views("1.2 Billion") == pytest.approx(1.2e9)
  assert verbalize.parse_views("950") == 950
  blift = verbalize.parse_blift(
      "Scene 1: a dog runs\nScene 2: a cat\n>>> BEHAVIOR <<<\nThe video will be liked by 2.0% of viewers\n"
      "The post will receive 346 thousand upvotes.\nReplays: Scene 1: 0.06, Scene 2: 0.40")
  assert blift["likes_percent"] == pytest.approx(2.0)
  assert blift["replay"] == (0.06, 0.4)
  assert blift["upvotes"] == pytest.approx(346e3)
  assert blift["description"] == "Scene 1: a dog runs\nScene 2: a cat"
  assert verbalize.parse_level("This tweet has low likes.") == "low"
  assert verbalize.parse_level("HIGH") == "high"
  assert verbalize.parse_level("medium likes", behavior.LIKE_LEVELS) == "medium"
  assert verbalize.parse_scene_number("Scene 3 is the most replayed (Replays: 80) because it shows a star.") == 3
  assert verbalize.parse_sentiment('Negative, because people wrote "so sad".') == "negative"
  # A corpus whose likes exceed its views writes a share above 100%; the target means it.
  assert verbalize.parse_likes_per_view("Likes-per-View: 300%") == 300.0


@pytest.mark.parametrize("garbage", [
    "", "Scene", "Scene 2: {Replay: abc}", "Scene 2: {Replay: 250%}", "\x00\xff\ufffd", "Views: lots",
    "Likes-per-View: -3%", "highlights and lowlights", "liked by many", None, 123, "[MASK] " * 50,
])
def test_parsers_never_crash_on_garbage(garbage):
  assert verbalize.parse_replays(garbage) == {}
  blift = verbalize.parse_blift(garbage)
  assert blift["replay"] is None and blift["comments"] == ()
  assert verbalize.parse_views(garbage) is None
  assert verbalize.parse_likes_per_view(garbage) is None
  assert blift["likes_percent"] is None
  assert blift["upvotes"] is None
  assert verbalize.parse_level(garbage) is None
  assert verbalize.parse_scene_number(garbage) == (2 if isinstance(garbage, str) and "Scene 2" in garbage else None)
  assert verbalize.parse_sentiment(garbage) is None
  parsed = verbalize.parse_behavior_simulation(garbage)
  assert parsed["views"] is None and parsed["likes_per_view"] is None
  pred, true = behavior.align_replays(dict(enumerate(parsed["replay"])), {1: 40.0, 2: 60.0})
  m = behavior.replay_metrics([pred], [true])
  assert m["unparseable"] == 2 and m["acc_within_5"] == 0.0
  for fmt, parse in verbalize.PARSERS.items():   # every task parser survives it too
    parse(garbage)


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
  # nltk without smoothing: the 4-gram precision with no match enters as sys.float_info.min
  assert b["bleu4"] == pytest.approx(math.exp((math.log(5 / 6 * 3 / 5 / 4) + math.log(sys.float_info.min)) / 4),
                                     rel=1e-9, abs=0)
  assert b["bleu4"] < 1e-70
  assert content.rouge_l([hyp], [ref]) == pytest.approx(5 / 6)  # LCS = 5 of 6 either way
  short = content.bleu(["a b c"], ["a b c d e"])
  assert short["bleu1"] == pytest.approx(math.exp(1 - 5 / 3))  # brevity penalty only
  # ROUGE-L: LCS("a b c", "a x c b") = 2 -> P = 2/3, R = 2/4
  assert content.rouge_l(["a b c"], ["a x c b"]) == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
  assert content.rouge_l(["a b c d"], ["a c d e"]) == pytest.approx(0.75)  # LCS 3: P = R = 3/4
  assert content.rouge_l(["!!!"], ["a"]) == 0.0
  assert content.bleu(["x y"], ["a b"]) == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0}  # no unigram


def test_bleu_pools_counts_over_the_corpus():
  # Sentence 1: 1-grams 3/4, 2-grams 2/3, 3-grams 1/2, 4-grams 0/1. Sentence 2 is shorter than 3,
  # so it adds 0/1 to the 3- and 4-gram precisions. Pooled: p1 = 5/6, p2 = 3/4, p3 = 1/3, p4 = 0/2;
  # 6 hypothesis vs 7 reference tokens -> BP = exp(1 - 7/6).
  b = content.bleu(["a b c d", "e f"], ["a b c x", "e f g"])
  bp = math.exp(1 - 7 / 6)
  assert b["bleu1"] == pytest.approx(bp * 5 / 6)
  assert b["bleu2"] == pytest.approx(bp * math.sqrt(5 / 6 * 3 / 4))
  assert b["bleu3"] == pytest.approx(bp * (5 / 6 * 3 / 4 / 3) ** (1 / 3))
  assert b["bleu4"] < 1e-70
  # Clipping: "the" matches at most as often as the reference has it.
  assert content.bleu(["the the the"], ["the cat sat"], max_n=1) == {"bleu1": pytest.approx(1 / 3)}
  assert content.bleu([], []) == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0}
  assert math.isnan(content.rouge_l([], []))
  with pytest.raises(ValueError):
    content.bleu(["a"], ["a", "b"])
  with pytest.raises(ValueError):
    content.rouge_l(["a"], [])


def test_generation_metrics_tokens_and_a_random_corpus():
  # One tokenization for both metrics: lower-cased runs of a-z0-9 (case and punctuation ignored,
  # "x-ray" is two tokens, no stemming: "sat" and "sitting" differ).
  assert content.rouge_l(["The CAT, sat!"], ["the cat sat"]) == 1.0
  assert content.bleu(["The CAT, sat!"], ["the cat sat"], max_n=3) == pytest.approx(
      {"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0})
  assert content.rouge_l(["x-ray"], ["x ray"]) == 1.0
  assert content.rouge_l(["cats sitting"], ["cat sat"]) == 0.0
  rng = np.random.default_rng(0)
  hyps, refs = _random_sentences(rng, 40), _random_sentences(rng, 40)
  m = content.generation_metrics(hyps, refs)
  assert m["bleu4"] > 0.05 and m["n"] == 40
  assert m["bleu1"] > m["bleu2"] > m["bleu3"] > m["bleu4"]
  # ROUGE-L is the mean of sentence F1s (symmetric in hypothesis and reference); BLEU is not a mean.
  per_sentence = [content.rouge_l([h], [r]) for h, r in zip(hyps, refs)]
  assert m["rougeL"] == pytest.approx(np.mean(per_sentence), abs=1e-12)
  assert content.rouge_l(refs, hyps) == pytest.approx(m["rougeL"], abs=1e-12)
  assert m["bleu4"] != pytest.approx(np.mean([content.bleu([h], [r])["bleu4"] for h, r in zip(hyps, refs)]))
  long = [r for r in refs if len(r.split()) >= 4]
  assert content.generation_metrics(long, long) == pytest.approx(
      {"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0, "rougeL": 1.0, "n": len(long)})
  # A copied sentence shorter than n still adds 0/1 to the n-gram precision.
  copied = content.generation_metrics(refs, refs)
  assert copied["bleu1"] == 1.0 and copied["rougeL"] == 1.0 and copied["bleu4"] < copied["bleu2"] < 1.0


def _random_sentences(rng, n):
  vocab = "the cat sat on a mat".split()  # small vocabulary: 3- and 4-gram matches happen
  return [" ".join(rng.choice(vocab, size=rng.integers(1, 14))) for _ in range(n)]


# ---------------------------------------------------------------- scoring-based tasks


def test_choice_accuracy():
  # (The option scores themselves come from inference.score_options, tested against score().)
  scores = [np.array([-4.0, 0.0, -4.0]), np.array([0.0, -5.0]), np.array([-5.0, -6.0])]
  m = content.choice_accuracy(scores, [1, 0, 1])
  assert m["accuracy"] == pytest.approx(2 / 3)
  assert m["random"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)


def test_label_accuracy_and_memorability_spearman():
  m = content.label_accuracy([np.array([0.0, -1.0]), np.array([-3.0, -1.0])], ["happy", "sad"], ["happy", "happy"])
  assert m["accuracy"] == 0.5 and m["random"] == 0.5
  # Ties take their average rank: [1, 2.5, 2.5, 4] vs [1, 3, 2, 4] -> 4.5 / sqrt(4.5 * 5)
  assert content.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-12)
  assert content.spearman([1, 1, 2, 2], [10, 20, 30, 40]) == pytest.approx(2 / math.sqrt(5), abs=1e-12)
  assert content.spearman([1, 2, 3], [10, 1e6, 1e9]) == pytest.approx(1.0)   # ranks only
  assert content.spearman([0.5, 0.1], [1, 2]) == pytest.approx(-1.0)
  rng = np.random.default_rng(1)
  a, b = rng.permutation(30), rng.normal(size=30)   # no ties: 1 - 6 sum(d^2) / (n (n^2 - 1))
  d = a - np.argsort(np.argsort(b))
  assert content.spearman(a, b) == pytest.approx(1 - 6 * np.sum(d ** 2) / (30 * (30 ** 2 - 1)), abs=1e-12)
  with warnings.catch_warnings():
    warnings.simplefilter("error")   # constant input: NaN, and no scipy warning per call
    for x, y in (([3, 3, 3], [1, 2, 3]), ([1, 2, 3], [5, 5, 5]), ([1], [2]), ([], []), ([1, 2], [1, 2, 3])):
      assert math.isnan(content.spearman(x, y)), (x, y)
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


# The prefix-shared option scorer against independent score() calls: tests/test_inference.py.


def test_parsers_read_the_verbalized_targets(tiny):
  """Golden round trip: what the templates write (data_pipeline.verbalize) parses back to the answer,
  and the answer is the exact truth up to the rounding of numbers written in words."""
  from data_pipeline import pipeline

  _, _, tok, data_dir = tiny
  corpus = pipeline.Corpus(data_dir, "test")
  seen = set()
  for i in range(len(corpus)):
    r = corpus[i]
    for task in ("behavior_simulation", "blift"):
      if not verbalize.applies(r, task, corpus.context):
        continue
      v = verbalize.verbalize(r, task, rng=np.random.default_rng(i), max_images=4, context=corpus.context)
      a, x = v.answer, v.exact
      assert v.parse(v.target) == a
      if task == "behavior_simulation":
        assert a["replay"] == tuple(math.floor(s + 0.5) for s in r.behavior.replay)
        assert x["views"] == r.behavior.views and abs(a["views"] - x["views"]) <= _words_error(x["views"])
        assert a["likes_per_view"] == pytest.approx(x["likes_per_view"], abs=0.05)
      elif a["replay"] is not None:
        assert a["likes_percent"] == pytest.approx(x["likes_percent"], abs=0.05)
      else:
        assert x["upvotes"] == r.behavior.upvotes and abs(a["upvotes"] - x["upvotes"]) <= _words_error(x["upvotes"])
      seen.add((task, a["replay"] is None if task == "blift" else None))
  assert len(seen) == 3


def _words_error(x: float) -> float:
  """Rounding of numbers in words: whole thousands, or millions/billions with one decimal."""
  return 0.5 if x < 1e3 else 500 if x < 1e6 - 5e4 else 0.05 * (1e6 if x < 1e9 else 1e9)


class _OracleRunner:
  """Generates each example's reference target: every model metric must come out perfect."""

  def __init__(self, runner, targets):
    self.runner, self.targets, self.codec, self.cfg = runner, targets, runner.codec, runner.cfg

  def generate_answers(self, examples, desc):
    return [self.targets[tuple(int(t) for t in e.prompt_ids)] for e in examples]

  def score_options(self, *args):
    return self.runner.score_options(*args)


def test_oracle_generations_score_perfectly(tiny, monkeypatch):
  from data_pipeline import pipeline
  from data_pipeline.codec import Codec
  from lcbm_jax.evaluation import run

  cfg, params, tok, data_dir = tiny
  codec = Codec(tok, cfg.num_image_tokens)
  targets = {}
  for split in ("test", "test_time", "test_brand"):
    for task in ("behavior_simulation", "kbft", "likes_high_low", "tweet_generation", "blift",
                 "behavior_understanding"):
      variants = [{"regime": r} for r in ("past", "future", "random")] if task == "kbft" else [{}]
      for opts in variants:
        try:
          for e in pipeline.eval_examples(data_dir, split, task, codec=codec, image_size=cfg.vision.image_size,
                                          image_mean=cfg.image_mean, image_std=cfg.image_std,
                                          max_images=cfg.max_images, **opts):
            targets[tuple(int(t) for t in e.prompt_ids)] = e.verbalized.target
        except Exception as err:  # a split some corpus lacks
          assert "split" in str(err)
  real_runner = run.Runner
  monkeypatch.setattr(run, "Runner", lambda *a, **k: _OracleRunner(real_runner(*a, **k), targets))
  assert run.DEFAULT_TASKS == tuple(run.TASK_FNS)
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
          for e in pipeline.eval_examples(data_dir, "test", "behavior_simulation", codec=codec, max_examples=3,
                                          image_size=cfg.vision.image_size, image_mean=cfg.image_mean,
                                          image_std=cfg.image_std)
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
  """100-way labels (memorability) are split into chunks of runner.ROWS_PER_CALL; nothing is lost or mixed."""
  from data_pipeline.codec import Codec
  from lcbm_jax import inference
  from lcbm_jax.evaluation import runner as runner_lib

  cfg, params, tok, _ = tiny
  runner = runner_lib.Runner(cfg, params, Codec(tok, cfg.num_image_tokens))
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


def _replay_videos(rng, v, *, base_sd=12.0, pred_sd=6.0):
  true = [rng.uniform(20, 80, rng.integers(1, 8)) for _ in range(v)]
  base = [t + rng.normal(0, base_sd, t.size) for t in true]
  pred = [t + rng.normal(0, pred_sd, t.size) for t in true]
  return pred, base, true


def test_replay_paired_bootstrap():
  """Video-level paired percentile bootstrap of (model - baseline) RMSE and accuracy: contains the
  full-sample difference, narrows with more videos, is exactly 0 for a model equal to the baseline
  and below 0 for a much better one."""
  pred, base, true = _replay_videos(np.random.default_rng(1), 60)
  pred[3] = pred[3].copy()
  pred[3][0] = np.nan   # unparseable: baseline value for RMSE, wrong for accuracy
  ci = behavior.replay_paired_bootstrap(pred, base, true, np.random.default_rng(0), n_boot=20000)
  filled = [np.where(np.isnan(p), b, p) for p, b in zip(pred, base)]
  p, f, b, t = map(np.concatenate, (pred, filled, base, true))   # every scene of every video
  full_rmse = math.sqrt(np.mean((f - t) ** 2)) - math.sqrt(np.mean((b - t) ** 2))
  full_acc = np.mean(np.abs(p - t) <= 5) - np.mean(np.abs(b - t) <= 5)   # NaN compares False
  assert ci["rmse"][0] < full_rmse < ci["rmse"][1] and ci["acc_within_5"][0] < full_acc < ci["acc_within_5"][1]
  assert ci["rmse"][1] < 0 and ci["acc_within_5"][0] > 0 and ci["videos"] == 60
  # The unparseable scene: as the baseline's value for RMSE, as a miss for accuracy (same resamples).
  as_base = behavior.replay_paired_bootstrap(filled, base, true, np.random.default_rng(0), n_boot=20000)
  miss = [p.copy() for p in filled]
  miss[3][0] = true[3][0] + 100
  as_miss = behavior.replay_paired_bootstrap(miss, base, true, np.random.default_rng(0), n_boot=20000)
  assert ci["rmse"] == as_base["rmse"] and ci["acc_within_5"] == as_miss["acc_within_5"]
  # Paired: the spread model and baseline share cancels.
  same = behavior.replay_paired_bootstrap(base, base, true, np.random.default_rng(0))
  assert same["rmse"] == (0.0, 0.0) and same["acc_within_5"] == (0.0, 0.0)
  # 16x the videos -> about a quarter of the width.
  few, many = (behavior.replay_paired_bootstrap(*_replay_videos(np.random.default_rng(2), v),
                                               np.random.default_rng(0)) for v in (40, 640))
  for key in ("rmse", "acc_within_5"):
    assert many[key][1] - many[key][0] < 0.5 * (few[key][1] - few[key][0]), key


def test_replay_paired_bootstrap_rng_and_edge_cases():
  pred, base, true = _replay_videos(np.random.default_rng(3), 30)
  rng = np.random.default_rng(7)
  ci = behavior.replay_paired_bootstrap(pred, base, true, rng)
  assert ci == behavior.replay_paired_bootstrap(pred, base, true, np.random.default_rng(7))
  assert ci["rmse"] != behavior.replay_paired_bootstrap(pred, base, true, np.random.default_rng(8))["rmse"]
  # The caller's rng advances by one [n_boot, V] draw of video indices, whatever the statistics:
  # what it draws next (kbft's next regime: its random baseline) does not depend on the bootstrap.
  ref = np.random.default_rng(7)
  ref.integers(0, 30, (2000, 30))
  assert rng.integers(0, 2 ** 62) == ref.integers(0, 2 ** 62)
  empty = behavior.replay_paired_bootstrap([], [], [], np.random.default_rng(0))
  assert empty["videos"] == 0 and all(math.isnan(x) for k in ("rmse", "acc_within_5") for x in empty[k])
  # One video: every resample is that video, so the interval is its difference.
  one = behavior.replay_paired_bootstrap([[50.0, 60.0]], [[40.0, 60.0]], [[50.0, 70.0]], np.random.default_rng(0))
  assert one["videos"] == 1
  assert one["rmse"] == pytest.approx((math.sqrt(50) - 10, math.sqrt(50) - 10))   # SSE 100 vs 200 over 2 scenes
  assert one["acc_within_5"] == (0.5, 0.5)
