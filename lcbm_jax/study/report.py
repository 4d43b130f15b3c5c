"""Rendering a study's JSON result: Markdown tables, the block of docs/results.md it owns, and plots.

A study writes `result.json` (numbers only, no timings) and renders everything people read from it:
`results.md` next to it, its block of docs/results.md (between `<!-- study:NAME -->` and
`<!-- /study:NAME -->`, so a test can re-render the committed JSON and find no difference), and PNG
plots (bars with 95% intervals; learning curves from each run's metrics.jsonl).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Sequence

import numpy as np

from lcbm_jax.study.runner import write_json_atomic


def fmt(x, digits: int = 3) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
    return f"{int(x):,}"
  return f"{x:.{digits}f}"


def mean_std(summary: dict, digits: int = 3) -> str:
  """"0.412 ± 0.031" from a `stats.seed_summary`."""
  return f"{fmt(summary['mean'], digits)} ± {fmt(summary['std'], digits)}"


def interval(boot: dict, digits: int = 3) -> str:
  """"+0.041 [-0.012, +0.093] (MDE 0.08)" from a `stats.hierarchical_bootstrap`: the minimal detectable
  effect is shown wherever the interval holds 0 (a null), so a reader sees what the study could miss."""
  lo, hi = boot["ci95"]
  if any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
    return f"{boot['estimate']:+.{digits}f} [no interval]"
  text = f"{boot['estimate']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
  return text if boot["excludes_null"] else f"{text} (null; MDE {fmt(boot['mde'], digits)})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
  return f"<!-- study:{name} -->", f"<!-- /study:{name} -->"


def replace_block(document: str, name: str, markdown: str) -> str:
  """`document` with study `name`'s block replaced by `markdown` (appended when it has none)."""
  start, end = _markers(name)
  block = f"{start}\n{markdown.strip()}\n{end}"
  pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
  if pattern.search(document):
    return pattern.sub(lambda _: block, document, count=1)
  return document.rstrip("\n") + "\n\n" + block + "\n"


def read_block(document: str, name: str) -> str | None:
  start, end = _markers(name)
  m = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), document, re.S)
  return m.group(1) if m else None


def write_outputs(out_dir: str, name: str, result: dict, markdown: str, results_md: str | None = None) -> None:
  """result.json and results.md under `out_dir`; with `results_md`, also that file's block of `name`."""
  write_json_atomic(os.path.join(out_dir, "result.json"), result)
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(markdown.strip() + "\n")
  if results_md:
    text = open(results_md).read() if os.path.exists(results_md) else ""
    with open(results_md, "w") as f:
      f.write(replace_block(text, name, markdown))


def load_result(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _pyplot():
  # matplotlib only when a study renders, with Agg: no display on a CI box or a TPU VM.
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # after use("Agg")
  return plt


def _finish(plt, fig, ax, path: str, title: str) -> str:
  """Title, legend, layout; saved to `path` (its folder made) and closed."""
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def bar_plot(path: str, title: str, groups: Sequence[str], arms: Sequence[str], means, lows, highs,
             *, ylabel: str = "", chance: float | None = None) -> str:
  """Grouped bars (one group per task or regime, one bar per arm) with 95% interval whiskers."""
  plt = _pyplot()
  means, lows, highs = (np.asarray(x, np.float64).reshape(len(groups), len(arms)) for x in (means, lows, highs))
  fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.2))
  width = 0.8 / len(arms)
  x = np.arange(len(groups))
  for j, arm in enumerate(arms):
    # A percentile interval need not hold the mean of a skewed statistic: whiskers stop at the bar then.
    err = np.clip(np.nan_to_num(np.stack([means[:, j] - lows[:, j], highs[:, j] - means[:, j]])), 0, None)
    ax.bar(x + (j - (len(arms) - 1) / 2) * width, means[:, j], width, yerr=err, capsize=3, label=arm)
  if chance is not None:
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
  ax.set_xticks(x, groups)
  ax.set_ylabel(ylabel)
  return _finish(plt, fig, ax, path, title)


def learning_curves(path: str, title: str, runs: dict[str, Sequence[str]], key: str = "train/loss") -> str:
  """`key` against step for every run: {arm: [metrics.jsonl of each seed]}, one colour per arm."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.2))
  for k, (arm, files) in enumerate(runs.items()):
    for i, f in enumerate(files):
      steps, values = [], []
      if os.path.exists(f):
        for line in open(f):
          row = json.loads(line)
          if key in row:
            steps.append(row["step"])
            values.append(row[key])
      ax.plot(steps, values, color=f"C{k}", alpha=0.8, linewidth=1, label=arm if i == 0 else None)
  ax.set_xlabel("step")
  ax.set_ylabel(key)
  return _finish(plt, fig, ax, path, title)
