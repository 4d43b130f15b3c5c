"""Behavior-simulation metrics and training-split baselines.

Metrics follow PAPERS.md (LCBM): replay RMSE on the 0-100 scale and accuracy = share of scenes
with absolute error <= 5; views and likes/views RMSE, R2 and accuracy within 10%; high/low (and
low/medium/high) like-level accuracy. Everything here is plain numpy (scipy for the bootstrap), so
the metrics can be pinned on hand-computed values without a model.

A model's generation can be anything; the parsers next to the templates (data_pipeline.verbalize)
never raise, and a value they cannot read reaches the metrics as NaN (numbers) or None (labels).
Accuracy metrics count such a prediction as wrong;
RMSE/R2 replace it by a fallback (the caller passes the training-split baseline prediction, so a
model that emits garbage scores like the baseline there, never better) and every metric dict
reports how many predictions were unparseable.
"""
from __future__ import annotations

import collections
import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

LIKE_LEVELS = ("low", "medium", "high")

# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _as_array(x) -> np.ndarray:
  return np.asarray(x, dtype=np.float64).reshape(-1)


def rmse(pred, true) -> float:
  pred, true = _as_array(pred), _as_array(true)
  return float(np.sqrt(np.mean((pred - true) ** 2))) if true.size else math.nan


def r2(pred, true) -> float:
  """Coefficient of determination 1 - SS_res / SS_tot (can be negative; NaN if true is constant)."""
  pred, true = _as_array(pred), _as_array(true)
  ss_tot = float(np.sum((true - true.mean()) ** 2)) if true.size else 0.0
  if ss_tot == 0.0:
    return math.nan
  return 1.0 - float(np.sum((pred - true) ** 2)) / ss_tot


def within_abs(pred, true, tol: float) -> float:
  """Share of predictions with |pred - true| <= tol; NaN predictions count as wrong."""
  pred, true = _as_array(pred), _as_array(true)
  if not true.size:
    return math.nan
  ok = np.abs(pred - true) <= tol + 1e-9
  return float(np.mean(np.where(np.isnan(pred), False, ok)))


def within_rel(pred, true, rel: float = 0.10) -> float:
  """Share of predictions within `rel` (10%) of the true value; NaN predictions count as wrong."""
  pred, true = _as_array(pred), _as_array(true)
  if not true.size:
    return math.nan
  ok = np.abs(pred - true) <= rel * np.abs(true) + 1e-9
  return float(np.mean(np.where(np.isnan(pred), False, ok)))


def _fill(pred: np.ndarray, fallback) -> np.ndarray:
  fallback = np.broadcast_to(_as_array(fallback), pred.shape)
  return np.where(np.isnan(pred), fallback, pred)


def regression_metrics(pred, true, fallback, *, rel: float = 0.10, log10: bool = False) -> dict:
  """RMSE, R2 and accuracy-within-`rel` of scalar predictions (views, likes/views).

  NaN predictions are unparseable: wrong for accuracy, replaced by `fallback` for RMSE/R2.
  `log10` computes RMSE/R2 on log10(1 + x) (views span orders of magnitude); accuracy stays on the
  raw value.
  """
  pred, true = _as_array(pred), _as_array(true)
  filled = _fill(pred, fallback)
  a, b = (np.log10(1 + np.maximum(filled, 0)), np.log10(1 + np.maximum(true, 0))) if log10 else (filled, true)
  return {
      "rmse": rmse(a, b),
      "r2": r2(a, b),
      "acc_within_10pct": within_rel(pred, true, rel),
      "unparseable": int(np.isnan(pred).sum()),
      "n": int(true.size),
  }


def replay_metrics(pred_scenes: Sequence[Sequence[float]], true_scenes: Sequence[Sequence[float]],
                   fallback_scenes: Sequence[Sequence[float]] | None = None, *, tol: float = 5.0) -> dict:
  """Per-scene replay metrics over many videos (LCBM, 0-100 scale).

  pred_scenes[i][j] is the prediction for the j-th masked scene of video i (NaN = unparseable);
  true_scenes has the same ragged shape. RMSE pools all scenes; accuracy = share of scenes with
  |error| <= tol. Unparseable scenes are wrong for accuracy and take `fallback_scenes` (same shape,
  default 50) for RMSE.
  """
  pred = np.concatenate([_as_array(p) for p in pred_scenes]) if len(pred_scenes) else np.zeros(0)
  true = np.concatenate([_as_array(t) for t in true_scenes]) if len(true_scenes) else np.zeros(0)
  if pred.shape != true.shape:
    raise ValueError(f"replay_metrics: {pred.size} predicted scenes vs {true.size} true scenes")
  if fallback_scenes is None:
    fallback = np.full_like(true, 50.0)
  else:
    fallback = np.concatenate([_as_array(f) for f in fallback_scenes]) if len(fallback_scenes) else np.zeros(0)
  return {
      "rmse": rmse(_fill(pred, fallback), true),
      "acc_within_5": within_abs(pred, true, tol),
      "unparseable": int(np.isnan(pred).sum()),
      "n": int(true.size),
  }


def replay_paired_bootstrap(pred_scenes: Sequence[Sequence[float]], base_scenes: Sequence[Sequence[float]],
                            true_scenes: Sequence[Sequence[float]], rng: np.random.Generator, *,
                            n_boot: int = 2000, level: float = 0.95, tol: float = 5.0) -> dict:
  """Confidence intervals of (model - baseline) replay RMSE and |err|<=tol accuracy, resampling
  *videos* with replacement (scipy.stats.bootstrap, paired, percentile: each resample scores both
  on the same videos, so the video-to-video spread they share cancels). Unparseable model scenes
  count as in `replay_metrics` (baseline value for RMSE, wrong for accuracy).
  Returns {"rmse": (low, high), "acc_within_5": (low, high), "videos": V}."""
  base = [_as_array(b) for b in base_scenes]
  pred = [_fill(_as_array(p), b) for p, b in zip(pred_scenes, base)]
  hit = [np.abs(_as_array(p) - _as_array(t)) <= tol for p, t in zip(pred_scenes, true_scenes)]   # NaN -> False
  true = [_as_array(t) for t in true_scenes]
  per_video = np.array([[np.sum((p - t) ** 2), np.sum((b - t) ** 2), h.sum(), np.sum(np.abs(b - t) <= tol), t.size]
                        for p, b, h, t in zip(pred, base, hit, true)], np.float64).reshape(-1, 5)
  v = len(per_video)
  if v == 0:
    return {"rmse": (math.nan, math.nan), "acc_within_5": (math.nan, math.nan), "videos": 0}

  def differences(sse_model, sse_base, hits_model, hits_base, scenes, axis=-1):
    """(model - baseline) RMSE and accuracy pooled over the videos along `axis`: [2, ...]."""
    sse_model, sse_base, hits_model, hits_base, scenes = (
        x.sum(axis) for x in (sse_model, sse_base, hits_model, hits_base, scenes))
    return np.stack([np.sqrt(sse_model / scenes) - np.sqrt(sse_base / scenes), (hits_model - hits_base) / scenes])

  if v == 1:   # scipy needs two observations; every resample of one video is that video
    low = high = differences(*per_video.T)
  else:
    # One call for both statistics: they share the resampled videos, and `rng` gives one [n_boot, V]
    # draw of video indices, as before scipy, so what the caller draws from it next is unchanged.
    ci = stats.bootstrap(tuple(per_video.T), differences, paired=True, vectorized=True, n_resamples=n_boot,
                         confidence_level=level, method="percentile", rng=rng).confidence_interval
    low, high = ci.low, ci.high
  return {"rmse": (float(low[0]), float(high[0])), "acc_within_5": (float(low[1]), float(high[1])), "videos": v}


def accuracy(pred_labels: Sequence, true_labels: Sequence) -> dict:
  """Exact-match accuracy of labels; None predictions are unparseable and wrong."""
  if len(pred_labels) != len(true_labels):
    raise ValueError(f"accuracy: {len(pred_labels)} predictions vs {len(true_labels)} labels")
  n = len(true_labels)
  correct = sum(p is not None and p == t for p, t in zip(pred_labels, true_labels))
  return {
      "accuracy": correct / n if n else math.nan,
      "unparseable": sum(p is None for p in pred_labels),
      "n": n,
  }


def align_replays(pred: Mapping[int, float], true: Mapping[int, float]) -> tuple[list[float], list[float]]:
  """Lines up parsed predictions with the true masked scenes (missing scenes -> NaN)."""
  scenes = sorted(true)
  return [float(pred.get(s, math.nan)) for s in scenes], [float(true[s]) for s in scenes]


# --------------------------------------------------------------------------------------------
# Baselines, always fitted on the TRAINING split.
# --------------------------------------------------------------------------------------------


def majority_label(train_labels: Iterable[str]) -> str:
  """Most frequent training label (ties broken by LIKE_LEVELS order, then alphabetically)."""
  counts = collections.Counter(l for l in train_labels if l is not None)
  if not counts:
    raise ValueError("majority_label: no training labels")
  order = {l: i for i, l in enumerate(LIKE_LEVELS)}
  return max(counts, key=lambda l: (counts[l], -order.get(l, len(order)), l))


class ReplayBaseline:
  """Mean replay per scene position (0-based index in the video) from training, and a global mean.

  Positions never seen in training fall back to the global mean.
  """

  def __init__(self, train_videos: Iterable[Mapping[int, float]]):
    sums: dict[int, float] = collections.defaultdict(float)
    counts: dict[int, int] = collections.defaultdict(int)
    total, n = 0.0, 0
    for video in train_videos:
      for scene, value in video.items():
        sums[scene] += float(value)
        counts[scene] += 1
        total += float(value)
        n += 1
    if not n:
      raise ValueError("ReplayBaseline: no training replay values")
    self.global_mean = total / n
    self.position_mean = {s: sums[s] / counts[s] for s in sums}

  def predict_position(self, scenes: Iterable[int]) -> list[float]:
    return [self.position_mean.get(s, self.global_mean) for s in scenes]

  def predict_global(self, scenes: Iterable[int]) -> list[float]:
    return [self.global_mean for _ in scenes]


def mean_baseline(train_values: Iterable[float]) -> float:
  """Training mean of a scalar target (views, likes/views), ignoring missing values."""
  values = _as_array([v for v in train_values if v is not None])
  values = values[np.isfinite(values)]
  if not values.size:
    raise ValueError("mean_baseline: no training values")
  return float(values.mean())


def random_replay_predictions(true_scenes: Sequence[Sequence[float]], rng: np.random.Generator) -> list[np.ndarray]:
  """PAPERS.md's random baseline for replays: uniform integers 0-100 per scene."""
  return [rng.integers(0, 101, size=len(t)).astype(np.float64) for t in true_scenes]
