"""The evaluation results format: `row()` builds one metric, `format_table()` prints them all.

`results[row][metric] = {"model": float, "baselines": {name: float}, "n": int}` (plus, for replay
metrics, `ci95_vs_position_mean`).
"""
from __future__ import annotations

import math


def row(model: float, n: int, **baselines: float) -> dict:
  return {"model": model, "baselines": baselines, "n": n}


def _fmt(x) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  if isinstance(x, int):
    return str(x)
  return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_table(results: dict) -> str:
  """task | metric | model | baseline(s) | n, one line per metric."""
  header = ("task", "metric", "model", "baselines", "n")
  lines = []
  for task, metrics in results.items():
    for metric, r in metrics.items():
      base = "  ".join(f"{k}={_fmt(v)}" for k, v in r["baselines"].items()) or "-"
      lines.append((task, metric, _fmt(r["model"]), base, str(r["n"])))
  widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
  fmt = "  ".join(f"{{:{'>' if i in (2, 4) else '<'}{w}}}" for i, w in enumerate(widths))
  rule = "  ".join("-" * w for w in widths)
  return "\n".join([fmt.format(*header), rule] + [fmt.format(*l) for l in lines])
