"""Content simulation and content understanding metrics.

- Multiple choice (LCBM's 25-way masked-ASR task): score every option's log-likelihood as the
  continuation of the prompt and pick the best.
- Tweet generation: corpus BLEU-1..4 and ROUGE-L F1, implemented here (no extra dependency) and
  checked in tests against nltk and rouge-score.
- Zero-shot understanding (Behavior-LLaVA): score each label word as a continuation and take the
  argmax (top-1 accuracy); memorability scores the 100 two-digit labels "00".."99", takes the
  expected value under their renormalised probabilities and reports Spearman correlation.

Model access goes through a `score_fn(prompts, continuations, images) -> float[N]` callable that
returns summed continuation log-likelihoods (run.py wraps `lcbm_jax.inference.score`), so every
function here can be tested with a hand-written scorer.
"""
from __future__ import annotations

import collections
import math
import re
from typing import Callable, Sequence

import numpy as np

# (prompt token ids, continuation token ids, images of the prompt) per item -> summed log p.
ScoreFn = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]], Sequence], np.ndarray]

MEMORABILITY_LABELS = tuple(f"{i:02d}" for i in range(100))


def tokenize(text: str) -> list[str]:
  """Lower-case alphanumeric words: the tokenization of rouge-score, used for BLEU as well."""
  return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split()


# --------------------------------------------------------------------------------------------
# Generation metrics.
# --------------------------------------------------------------------------------------------


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> dict[str, float]:
  """Corpus BLEU-1..max_n (cumulative, uniform weights, brevity penalty), one reference each.

  Matches nltk's `corpus_bleu` without smoothing, including its convention that a hypothesis
  shorter than n contributes a denominator of 1 to the n-gram precision, and that BLEU-n is 0 when
  any of its n-gram precisions has no match.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"bleu: {len(hypotheses)} hypotheses vs {len(references)} references")
  matches, totals = [0] * max_n, [0] * max_n
  hyp_len = ref_len = 0
  for hyp, ref in zip(hypotheses, references):
    h, r = tokenize(hyp), tokenize(ref)
    hyp_len += len(h)
    ref_len += len(r)
    for n in range(1, max_n + 1):
      h_counts, r_counts = _ngrams(h, n), _ngrams(r, n)
      matches[n - 1] += sum(min(c, r_counts[g]) for g, c in h_counts.items())
      totals[n - 1] += max(1, sum(h_counts.values()))
  if hyp_len == 0:
    bp = 0.0
  else:
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
  out = {}
  for n in range(1, max_n + 1):
    if any(m == 0 for m in matches[:n]):
      out[f"bleu{n}"] = 0.0
    else:
      log_p = sum(math.log(matches[k] / totals[k]) for k in range(n)) / n
      out[f"bleu{n}"] = bp * math.exp(log_p)
  return out


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b):
      cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
    prev = cur
  return prev[-1]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Mean sentence-level ROUGE-L F1 (LCS precision/recall, beta = 1), as rouge-score computes it."""
  if len(hypotheses) != len(references):
    raise ValueError(f"rouge_l: {len(hypotheses)} hypotheses vs {len(references)} references")
  scores = []
  for hyp, ref in zip(hypotheses, references):
    h, r = tokenize(hyp), tokenize(ref)
    lcs = _lcs_length(h, r)
    if not h or not r or lcs == 0:
      scores.append(0.0)
      continue
    p, rec = lcs / len(h), lcs / len(r)
    scores.append(2 * p * rec / (p + rec))
  return float(np.mean(scores)) if scores else math.nan


def generation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  return {**bleu(hypotheses, references), "rougeL": rouge_l(hypotheses, references), "n": len(references)}


# --------------------------------------------------------------------------------------------
# Scoring-based tasks.
# --------------------------------------------------------------------------------------------


def option_scores(score_fn: ScoreFn, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]],
                  images: Sequence, *, length_normalize: bool = False) -> list[np.ndarray]:
  """Log-likelihood of every option of every example: returns one float[K_i] per example.

  All (prompt, option) pairs go to `score_fn` in one call so the caller can batch them.
  `length_normalize` divides by the option's token count (for options of very different length).
  """
  flat_p, flat_c, flat_i, sizes = [], [], [], []
  for prompt, opts, imgs in zip(prompts, options, images):
    sizes.append(len(opts))
    for opt in opts:
      flat_p.append(prompt)
      flat_c.append(opt)
      flat_i.append(imgs)
  scores = np.asarray(score_fn(flat_p, flat_c, flat_i), dtype=np.float64) if flat_p else np.zeros(0)
  if length_normalize:
    scores = scores / np.maximum(1, np.asarray([len(c) for c in flat_c]))
  return np.split(scores, np.cumsum(sizes)[:-1]) if sizes else []


def choice_accuracy(scores: Sequence[np.ndarray], correct: Sequence[int]) -> dict:
  """Share of examples whose highest-scoring option is the correct one (ties -> first option)."""
  if len(scores) != len(correct):
    raise ValueError(f"choice_accuracy: {len(scores)} score rows vs {len(correct)} answers")
  hits = [int(np.argmax(s)) == int(c) for s, c in zip(scores, correct)]
  n_options = [len(s) for s in scores]
  return {
      "accuracy": float(np.mean(hits)) if hits else math.nan,
      "random": float(np.mean([1 / k for k in n_options])) if n_options else math.nan,
      "n": len(hits),
  }


def label_accuracy(scores: Sequence[np.ndarray], labels: Sequence[str], true: Sequence[str]) -> dict:
  """Zero-shot top-1 accuracy: the label whose word scored highest, against the true label."""
  pred = [labels[int(np.argmax(s))] for s in scores]
  n = len(true)
  return {
      "accuracy": sum(p == t for p, t in zip(pred, true)) / n if n else math.nan,
      "random": 1 / len(labels),
      "n": n,
  }


def _rank(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n, ties get their average rank."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x), dtype=np.float64)
  ranks[order] = np.arange(1, len(x) + 1)
  for value in np.unique(x):
    tied = x == value
    if tied.sum() > 1:
      ranks[tied] = ranks[tied].mean()
  return ranks


def spearman(a, b) -> float:
  """Spearman rank correlation (Pearson on average ranks); NaN if either side is constant."""
  a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
  if a.shape != b.shape or a.size < 2:
    return math.nan
  ra, rb = _rank(a), _rank(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
  return float((ra * rb).sum() / denom) if denom else math.nan


def expected_label_value(scores: np.ndarray, values: Sequence[float]) -> float:
  """Expected value of numeric labels under softmax(log-likelihoods) (memorability 00-99 -> 0-99)."""
  s = np.asarray(scores, dtype=np.float64)
  p = np.exp(s - s.max())
  p /= p.sum()
  return float(p @ np.asarray(values, dtype=np.float64))


def memorability_spearman(scores: Sequence[np.ndarray], true: Sequence[float]) -> dict:
  """Spearman between the expected 00-99 label and the true memorability score."""
  values = [float(l) for l in MEMORABILITY_LABELS]
  pred = [expected_label_value(s, values) for s in scores]
  return {"spearman": spearman(pred, true), "n": len(true)}
