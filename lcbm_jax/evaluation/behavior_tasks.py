"""Behavior simulation and behavior understanding tasks (LCBM, Behavior-LLaVA), with the behavior
optimization rows they share generations with.

  row                          model call         metrics (baselines fitted on the TRAIN split)
  behavior_simulation          generate, parse    replay RMSE / acc<=5 (position mean, global mean, random
                                                  0-100); views, likes/views RMSE, R2, acc within 10% (train mean)
  optimize_videos              from the above     top-1 most replayed video per channel, Spearman
  kbft/{past,future,random}    generate, parse    replay RMSE / acc<=5 (same baselines)
  likes_high_low/{time,brand}  generate, parse    accuracy (majority class, random)
  optimize_tweets              score high vs low  top-1 most liked tweet per account (random pick), Spearman
  blift                        generate, parse    upvotes / liked % RMSE, R2, acc within 10%, like level (low <
                                                  60th pct, high >= 90th) accuracy (majority level); replay RMSE /
                                                  acc<=5 (train mean, replay baselines)
  behavior_understanding/*     generate, parse    most replayed scene / comment sentiment accuracy (majority)

Each task function takes (runner, data, rng) and returns {row: {metric: table.row(...)}}. Answers are
read by the parser of the template that wrote the prompt (`Verbalized.parse`); metrics compare them
with the exact truth (`Verbalized.exact`). Unparseable generations are counted per task (metric
`unparseable`) and scored as wrong (see behavior.py).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from data_pipeline import verbalize
from lcbm_jax.errors import UserError
from lcbm_jax.evaluation import behavior, optimize
from lcbm_jax.evaluation.data import EvalData
from lcbm_jax.evaluation.runner import Runner
from lcbm_jax.evaluation.table import row

KBFT_REGIMES = ("past", "future", "random")
TWEET_SPLITS = (("time", "test_time"), ("brand", "test_brand"))


def _num(x) -> float:
  """A parsed number, NaN where the generation held none (behavior.py's unparseable marker)."""
  return math.nan if x is None else float(x)


def _present(values) -> dict[int, float]:
  """A by-scene tuple (None where missing) -> {scene: value}."""
  return {i: v for i, v in enumerate(values or ()) if v is not None}


def _replay_rows(pred_by_video, true_by_video, scenes_by_video, base: behavior.ReplayBaseline, rng) -> dict:
  pos_pred = [base.predict_position(s) for s in scenes_by_video]
  m = behavior.replay_metrics(pred_by_video, true_by_video, pos_pred)
  pos = behavior.replay_metrics(pos_pred, true_by_video)
  glob = behavior.replay_metrics([base.predict_global(s) for s in scenes_by_video], true_by_video)
  rand = behavior.replay_metrics(behavior.random_replay_predictions(true_by_video, rng), true_by_video)
  n = m["n"]
  ci = behavior.replay_paired_bootstrap(pred_by_video, pos_pred, true_by_video, rng)
  rows = {
      "replay_rmse": row(m["rmse"], n, position_mean=pos["rmse"], global_mean=glob["rmse"], random=rand["rmse"]),
      "replay_acc<=5": row(m["acc_within_5"], n, position_mean=pos["acc_within_5"],
                           global_mean=glob["acc_within_5"], random=rand["acc_within_5"]),
      "replay_unparseable": row(m["unparseable"], n),
  }
  # 95% interval of (model - per-scene mean), videos resampled: "clearly better" = excludes 0.
  rows["replay_rmse"]["ci95_vs_position_mean"] = ci["rmse"]
  rows["replay_acc<=5"]["ci95_vs_position_mean"] = ci["acc_within_5"]
  return rows


def _scalar_rows(name: str, pred, true, train_values: Iterable, log10: bool = False) -> dict:
  """RMSE / R2 / within-10% rows of one scalar behavior; none if the train split has no values.

  The baseline is the training mean, taken in log10(1 + x) space when the metric is (the mean
  that minimises that RMSE), so counts spanning orders of magnitude get a fair baseline.
  """
  values = [v for v in train_values if v is not None]
  if log10:
    values = [np.log10(1 + max(float(v), 0.0)) for v in values]
  try:
    train_mean = behavior.mean_baseline(values)
  except ValueError:
    return {}
  if log10:
    train_mean = float(10 ** train_mean - 1)
  m = behavior.regression_metrics(pred, true, train_mean, log10=log10)
  b = behavior.regression_metrics([train_mean] * len(true), true, train_mean, log10=log10)
  n = m["n"]
  scale = "_log10" if log10 else ""
  return {
      f"{name}{scale}_rmse": row(m["rmse"], n, train_mean=b["rmse"]),
      f"{name}{scale}_r2": row(m["r2"], n, train_mean=b["r2"]),
      f"{name}_acc_within_10%": row(m["acc_within_10pct"], n, train_mean=b["acc_within_10pct"]),
      f"{name}_unparseable": row(m["unparseable"], n),
  }


def _level_rows(name: str, pred, true, train_values) -> dict:
  """Like levels as LCBM cuts them (low < 60th percentile of the training split, high >= 90th): the
  share of items whose predicted value falls in the true value's level, against always answering the
  training split's most common level. An unparseable prediction is wrong."""
  values = np.array([v for v in train_values if v is not None], np.float64)
  if not values.size or not true:
    return {}
  cuts = (float(np.percentile(values, 60)), float(np.percentile(values, 90)))
  train_levels = [verbalize.like_level(v, cuts) for v in values]
  majority = max(sorted(set(train_levels)), key=train_levels.count)
  true_levels = [verbalize.like_level(t, cuts) for t in true]
  hits = [not math.isnan(p) and verbalize.like_level(p, cuts) == t for p, t in zip(pred, true_levels)]
  return {f"{name}_level": row(float(np.mean(hits)), len(hits),
                               majority=float(np.mean([t == majority for t in true_levels])))}


def _replay_baseline(data: EvalData) -> behavior.ReplayBaseline:
  videos = [dict(enumerate(a["replay"])) for a in data.train_answers("behavior_simulation")]
  if not videos:
    raise UserError(f"{data.data_dir} has no training videos with replays; replay baselines need the train split")
  return behavior.ReplayBaseline(videos)


def eval_behavior_simulation(runner: Runner, data: EvalData, rng) -> dict:
  ex = data.examples("test", "behavior_simulation")
  if not ex:
    return {}
  texts = runner.generate_answers(ex, "behavior_simulation")
  base = _replay_baseline(data)
  parsed = [e.verbalized.parse(t) for t, e in zip(texts, ex)]
  preds, trues, scenes = [], [], []
  for p, e in zip(parsed, ex):
    pr, tr = behavior.align_replays(_present(p["replay"]), dict(enumerate(e.answer["replay"])))
    preds.append(pr)
    trues.append(tr)
    scenes.append(range(len(tr)))
  rows = _replay_rows(preds, trues, scenes, base, rng)
  train = data.train_answers("behavior_simulation")
  exact = [e.verbalized.exact for e in ex]
  for name, log10 in (("views", True), ("likes_per_view", False)):
    have = [(p, x) for p, x in zip(parsed, exact) if x[name] is not None]
    if have:
      rows.update(_scalar_rows(name, [_num(p[name]) for p, _ in have], [x[name] for _, x in have],
                               (a[name] for a in train), log10=log10))
  out = {"behavior_simulation": rows}
  # Behavior optimization on videos: pick each channel's most replayed video by predicted mean replay.
  pred_mean = [np.nanmean(p) if not np.all(np.isnan(p)) else base.global_mean for p in map(np.asarray, preds)]
  true_mean = [float(np.mean(t)) for t in trues]
  channels = [e.record.communicator.account or e.record.communicator.brand for e in ex]
  opt = optimize.top1_hit_rate(pred_mean, true_mean, channels)
  if opt["groups"]:
    out["optimize_videos"] = {"top1_best_replay": row(opt["top1_hit"], opt["groups"], random=opt["random"]),
                              "spearman_in_channel": row(opt["spearman"], opt["groups"])}
  return out


def eval_kbft(runner: Runner, data: EvalData, rng) -> dict:
  out = {}
  base = None
  for regime in KBFT_REGIMES:
    ex = data.examples("test", "kbft", regime=regime)
    if not ex:
      continue
    base = base or _replay_baseline(data)
    texts = runner.generate_answers(ex, f"kbft/{regime}")
    preds, trues, scenes = [], [], []
    for t, e in zip(texts, ex):
      truth = dict(zip(e.answer["scenes"], e.answer["replay"]))
      got = e.verbalized.parse(t)
      pr, tr = behavior.align_replays(dict(zip(got["scenes"], got["replay"])), truth)
      preds.append(pr)
      trues.append(tr)
      scenes.append(sorted(truth))
    out[f"kbft/{regime}"] = _replay_rows(preds, trues, scenes, base, rng)
  return out


def eval_likes_high_low(runner: Runner, data: EvalData, rng) -> dict:
  out = {}
  majority = None
  for name, split in TWEET_SPLITS:
    ex = data.examples(split, "likes_high_low")
    if not ex:
      continue
    majority = majority or behavior.majority_label(data.train_answers("likes_high_low"))
    texts = runner.generate_answers(ex, f"likes_high_low/{name}")
    pred = [e.verbalized.parse(t) for t, e in zip(texts, ex)]
    true = [e.answer for e in ex]
    m = behavior.accuracy(pred, true)
    base = behavior.accuracy([majority] * len(true), true)
    # A uniform guess between two levels is right half the time, whatever the class balance.
    out[f"likes_high_low/{name}"] = {
        "accuracy": row(m["accuracy"], m["n"], majority=base["accuracy"], random=0.5),
        "unparseable": row(m["unparseable"], m["n"]),
    }
    if name == "time":
      out["optimize_tweets"] = _optimize_tweets(runner, ex)
  return out


def _optimize_tweets(runner: Runner, ex) -> dict:
  """Rank each account's test tweets by log p("high") - log p("low") of the likes target."""
  options = []
  for e in ex:
    targets = dict(e.verbalized.options)
    options.append([runner.codec.continuation(e.verbalized.prompt, targets[level], eos=True)
                    for level in ("high", "low")])
  scores = runner.score_options([e.prompt_ids for e in ex], options, [e.images for e in ex], "optimize_tweets")
  margin = optimize.high_low_margin([s[0] for s in scores], [s[1] for s in scores])
  likes = [e.record.behavior.likes for e in ex]
  m = optimize.top1_hit_rate(margin, likes, [e.record.communicator.account for e in ex])
  return {"top1_most_liked": row(m["top1_hit"], m["groups"], random=m["random"]),
          "spearman_in_account": row(m["spearman"], m["groups"])}


def eval_blift(runner: Runner, data: EvalData, rng) -> dict:
  # Posts and videos carry different behavior; take up to max_examples of each.
  ex = (data.examples("test", "blift", where=lambda e: e.answer["replay"] is None)
        + data.examples("test", "blift", where=lambda e: e.answer["replay"] is not None))
  if not ex:
    return {}
  texts = runner.generate_answers(ex, "blift")
  parsed = [e.verbalized.parse(t) for t, e in zip(texts, ex)]
  exact = [e.verbalized.exact for e in ex]
  train = data.train_answers("blift")
  rows = {}
  up = [(p, x) for p, x in zip(parsed, exact) if x["likes_percent"] is None and x["upvotes"] is not None]
  if up:
    rows.update(_scalar_rows("upvotes", [_num(p["upvotes"]) for p, _ in up], [x["upvotes"] for _, x in up],
                             (a["upvotes"] for a in train if a["likes_percent"] is None), log10=True))
    rows.update(_level_rows("upvotes", [_num(p["upvotes"]) for p, _ in up], [x["upvotes"] for _, x in up],
                            [a["upvotes"] for a in train if a["likes_percent"] is None]))
  liked = [(p, x) for p, x in zip(parsed, exact) if x["likes_percent"] is not None]
  if liked:
    rows.update(_scalar_rows("liked_percent", [_num(p["likes_percent"]) for p, _ in liked],
                             [x["likes_percent"] for _, x in liked], (a["likes_percent"] for a in train)))
    rows.update(_level_rows("liked_percent", [_num(p["likes_percent"]) for p, _ in liked],
                            [x["likes_percent"] for _, x in liked], [a["likes_percent"] for a in train]))
  vids = [(p, x) for p, x in zip(parsed, exact) if x["replay"] is not None]
  if vids:
    # BLIFT writes replays as decimals 0-1; metrics use LCBM's 0-100 scale so they compare across tasks.
    train_videos = [{i: 100 * v for i, v in enumerate(a["replay"])} for a in train if a["replay"] is not None]
    base = behavior.ReplayBaseline(train_videos) if train_videos else _replay_baseline(data)
    preds, trues, scenes = [], [], []
    for p, x in vids:
      pred = {i: 100 * v for i, v in _present(p["replay"]).items()}
      pr, tr = behavior.align_replays(pred, {i: 100 * v for i, v in enumerate(x["replay"])})
      preds.append(pr)
      trues.append(tr)
      scenes.append(range(len(tr)))
    rows.update(_replay_rows(preds, trues, scenes, base, rng))
  return {"blift": rows} if rows else {}


def eval_behavior_understanding(runner: Runner, data: EvalData, rng) -> dict:
  """Most replayed scene (videos) and overall comment sentiment: the label part of the explanation."""
  # The template asks videos with replays about their most replayed scene (answer: its 1-based
  # number) and other items about their comments' sentiment (answer: a word).
  out = {}
  train_all = data.train_answers("behavior_understanding")
  for kind, answer_type in (("replay", int), ("sentiment", str)):
    ex = data.examples("test", "behavior_understanding", where=lambda e: isinstance(e.answer, answer_type))
    if not ex:
      continue
    texts = runner.generate_answers(ex, f"behavior_understanding/{kind}")
    pred = [e.verbalized.parse(t) for t, e in zip(texts, ex)]
    true = [e.answer for e in ex]
    m = behavior.accuracy(pred, true)
    train = [a for a in train_all if isinstance(a, answer_type)]
    majority = max(set(train), key=lambda a: (train.count(a), str(a))) if train else None
    out[f"behavior_understanding/{kind}"] = {
        "accuracy": row(m["accuracy"], m["n"], majority=behavior.accuracy([majority] * len(true), true)["accuracy"]),
        "unparseable": row(m["unparseable"], m["n"]),
    }
  return out
