"""Behavior optimization: pick the content that will do best, judged by the model's predicted behavior.

Candidates are grouped (e.g. tweets of one account, or videos of one channel); within a group the
model ranks them by a predicted-behavior score — log p("high") - log p("low") for the like-level
task, or the predicted mean replay for videos — and we report how often the top-ranked candidate
is truly the best one (ties in the truth count as a hit for any of the tied best), next to the
random-pick rate, plus the mean within-group Spearman between predicted and true behavior.
"""
from __future__ import annotations

import collections
import math
from typing import Hashable, Sequence

import numpy as np

from lcbm_jax.evaluation import content


def high_low_margin(log_p_high: Sequence[float], log_p_low: Sequence[float]) -> np.ndarray:
  """Predicted-behavior score of the like-level task: how much more the model believes "high"."""
  return np.asarray(log_p_high, dtype=np.float64) - np.asarray(log_p_low, dtype=np.float64)


def group_candidates(groups: Sequence[Hashable], min_size: int = 2) -> list[list[int]]:
  """Indices of each group with at least `min_size` candidates, in first-seen order."""
  by_group: dict[Hashable, list[int]] = collections.OrderedDict()
  for i, g in enumerate(groups):
    by_group.setdefault(g, []).append(i)
  return [idx for idx in by_group.values() if len(idx) >= min_size]


def top1_hit_rate(predicted: Sequence[float], true: Sequence[float], groups: Sequence[Hashable],
                  *, min_size: int = 2) -> dict:
  """Share of groups whose highest-predicted candidate has the highest true behavior.

  Returns hit rate, the random-pick hit rate for the same groups (share of truly-best candidates),
  mean within-group Spearman, and the number of groups. Ties in `predicted` go to the first one.
  """
  predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
  if predicted.shape != true.shape or len(groups) != len(true):
    raise ValueError("top1_hit_rate: predicted, true and groups must have the same length")
  hits, random_rate, rhos = [], [], []
  for idx in group_candidates(groups, min_size):
    p, t = predicted[idx], true[idx]
    best = t == t.max()
    hits.append(bool(best[int(np.argmax(p))]))
    random_rate.append(best.mean())
    rho = content.spearman(p, t)
    if not math.isnan(rho):
      rhos.append(rho)
  return {
      "top1_hit": float(np.mean(hits)) if hits else math.nan,
      "random": float(np.mean(random_rate)) if hits else math.nan,
      "spearman": float(np.mean(rhos)) if rhos else math.nan,
      "groups": len(hits),
  }
