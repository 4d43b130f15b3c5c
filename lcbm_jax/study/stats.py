"""The statistics of a study: seed summaries, the hierarchical bootstrap, the minimal detectable effect.

A study's arms are compared on the same test items, seed by seed (the behavior arm and the control of
seed s start from the same base). The uncertainty of (arm - control) therefore has two sources: which
seeds were trained, and which items were tested. `hierarchical_bootstrap` resamples both, in that
order: seeds with replacement, then, inside each drawn seed, the test items with replacement, the same
items for both arms (paired). With one seed it is the ordinary paired bootstrap over items, which
`scipy.stats.bootstrap(..., paired=True, method="percentile")` computes too (tests/test_study.py
checks that the two agree).

Per-item values are arrays float[S, N, F]: seeds x items x fields, and a statistic maps
float[..., N, F] to float[...] (vectorised over leading axes, so 2,000 resamples cost one call):
`MEAN` of field 0 (accuracy from 0/1 hits), `RMSE` from squared errors, `SPEARMAN` of field 0
(prediction) against field 1 (truth).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import scipy.stats

Statistic = Callable[[np.ndarray], np.ndarray]
N_BOOT = 2000
BOOT_SEED = 20261202   # fixed, so a study's table is a function of its runs
POWER = 0.8


def MEAN(v: np.ndarray) -> np.ndarray:
  """Mean of field 0 (per-item hits -> accuracy)."""
  return v[..., 0].mean(-1)


def RMSE(v: np.ndarray) -> np.ndarray:
  """Root of the mean of field 0 (per-item squared errors)."""
  return np.sqrt(v[..., 0].mean(-1))


def SPEARMAN(v: np.ndarray) -> np.ndarray:
  """Spearman's rho of field 0 (prediction) against field 1 (truth), ties ranked by their average;
  NaN where a side is constant."""
  ranks = scipy.stats.rankdata(v[..., :2], axis=-2)
  ranks = ranks - ranks.mean(-2, keepdims=True)
  num = (ranks[..., 0] * ranks[..., 1]).sum(-1)
  den = np.sqrt((ranks[..., 0] ** 2).sum(-1) * (ranks[..., 1] ** 2).sum(-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


STATISTICS: dict[str, Statistic] = {"mean": MEAN, "rmse": RMSE, "spearman": SPEARMAN}


def seed_summary(values: Sequence[float]) -> dict:
  """{"per_seed", "mean", "std"} of one arm's metric over seeds (std with ddof 1; 0 for one seed)."""
  x = np.asarray(values, np.float64)
  return {"per_seed": [float(v) for v in x], "mean": float(np.nanmean(x)) if x.size else math.nan,
          "std": float(np.nanstd(x, ddof=1)) if np.sum(~np.isnan(x)) > 1 else 0.0}


def minimal_detectable_effect(se: float, level: float = 0.95, power: float = POWER) -> float:
  """The smallest true difference a two-sided test at `level` finds with probability `power`, given the
  difference's standard error: (z_{1-alpha/2} + z_power) * se. Next to a null, it says how large an effect
  the study could have missed."""
  return float((scipy.stats.norm.ppf(0.5 + level / 2) + scipy.stats.norm.ppf(power)) * se)


def _stack(values) -> np.ndarray:
  x = np.asarray(values, np.float64)
  if x.ndim == 2:   # one field per item
    x = x[..., None]
  if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"per-item values must be [seeds, items, fields], got shape {x.shape}")
  return x


def hierarchical_bootstrap(arm, control=None, statistic: Statistic = MEAN, *, null: float = 0.0,
                           n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = 0.95) -> dict:
  """The interval of statistic(arm) - statistic(control), averaged over seeds (or of statistic(arm) -
  `null`, e.g. chance, without a control), resampling seeds and then items.

  arm, control: float[S, N, F] (or [S, N]), the same S seeds and N items in the same order, paired.
  Returns {"estimate", "ci95": [low, high], "se", "mde", "excludes_null", "seeds", "items"}: the
  estimate is the mean over seeds of the per-seed difference; se the resamples' standard deviation;
  excludes_null whether the interval lies wholly on one side of 0 (both are differences).
  """
  a = _stack(arm)
  c = None if control is None else _stack(control)
  if c is not None and c.shape != a.shape:
    raise ValueError(f"arm {a.shape} and control {c.shape} must hold the same seeds, items and fields")
  s, n = a.shape[:2]

  def diff(x_arm, x_ctrl):
    return statistic(x_arm) - (null if x_ctrl is None else statistic(x_ctrl))

  estimate = float(np.nanmean(diff(a, c)))
  rng = np.random.default_rng(seed)
  seeds_drawn = rng.integers(s, size=(n_boot, s))
  total = np.zeros(n_boot)
  for j in range(s):   # the j-th drawn seed of every resample, with its own item draw
    items = rng.integers(n, size=(n_boot, n))
    pick = (seeds_drawn[:, j, None], items)
    total += diff(a[pick], None if c is None else c[pick])
  boots = total / s
  finite = boots[np.isfinite(boots)]
  if finite.size < n_boot // 2:   # e.g. Spearman of a constant prediction: no interval to give
    lo = hi = se = math.nan
  else:
    lo, hi = (float(q) for q in np.quantile(finite, [(1 - level) / 2, (1 + level) / 2]))
    se = float(finite.std(ddof=1))
  return {"estimate": estimate, "ci95": [lo, hi], "se": se,
          "mde": minimal_detectable_effect(se, level) if math.isfinite(se) else math.nan,
          "excludes_null": bool(lo > 0 or hi < 0),
          "seeds": s, "items": n}
