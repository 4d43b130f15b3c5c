"""Content simulation and content understanding metrics.

- Multiple choice (LCBM's 25-way masked-ASR task): score every option's log-likelihood as the
  continuation of the prompt and pick the best.
- Tweet generation: corpus BLEU-1..4 (nltk, no smoothing) and mean ROUGE-L F1 (rouge-score), both
  on rouge-score's tokens.
- Zero-shot understanding (Behavior-LLaVA): score each label word as a continuation and take the
  argmax (top-1 accuracy); memorability scores the 100 two-digit labels "00".."99", takes the
  expected value under their renormalised probabilities and reports Spearman correlation (scipy).

Everything here takes scores or texts, never a model (content_tasks.py runs the model), so each
metric is pinned on hand-computed values.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import scipy.stats
from nltk.translate import bleu_score
from rouge_score import rouge_scorer, tokenizers

MEMORABILITY_LABELS = tuple(f"{i:02d}" for i in range(100))


# rouge-score's tokens (lower-cased runs of a-z0-9, no stemming), for BLEU as well as ROUGE-L.
_TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=False)
_ROUGE_L = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_TOKENIZER)


# --------------------------------------------------------------------------------------------
# Generation metrics.
# --------------------------------------------------------------------------------------------


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> dict[str, float]:
  """Corpus BLEU-1..max_n (nltk `corpus_bleu`: cumulative, uniform weights, brevity penalty, no
  smoothing), one reference each.

  nltk's conventions: a hypothesis shorter than n adds a denominator of 1 to the n-gram precision;
  no unigram match gives 0; an n-gram order with no match enters the geometric mean as
  sys.float_info.min, so such a BLEU-n is below 1e-70 rather than exactly 0.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"bleu: {len(hypotheses)} hypotheses vs {len(references)} references")
  if not hypotheses:   # nltk divides 0 by 0 here; an empty corpus has no hypothesis length: BP = 0
    return {f"bleu{n}": 0.0 for n in range(1, max_n + 1)}
  hyps = [_TOKENIZER.tokenize(h) for h in hypotheses]
  refs = [[_TOKENIZER.tokenize(r)] for r in references]
  weights = [(1 / n,) * n for n in range(1, max_n + 1)]
  with warnings.catch_warnings():
    # nltk warns on every call with an n-gram order without match; the score already says so.
    warnings.filterwarnings("ignore", message=r"\nThe hypothesis contains 0 counts", category=UserWarning)
    scores = bleu_score.corpus_bleu(refs, hyps, weights=weights)
  # nltk returns a bare number, not a list, for a single weight tuple (max_n = 1).
  return {f"bleu{n}": float(x) for n, x in enumerate(np.atleast_1d(scores), start=1)}


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Mean sentence-level ROUGE-L F1 (rouge-score; LCS precision/recall, beta = 1)."""
  if len(hypotheses) != len(references):
    raise ValueError(f"rouge_l: {len(hypotheses)} hypotheses vs {len(references)} references")
  scores = [_ROUGE_L.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)]
  return float(np.mean(scores)) if scores else math.nan


def generation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  return {**bleu(hypotheses, references), "rougeL": rouge_l(hypotheses, references), "n": len(references)}


# --------------------------------------------------------------------------------------------
# Scoring-based tasks.
# --------------------------------------------------------------------------------------------


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


def spearman(a, b) -> float:
  """Spearman rank correlation (scipy; ties get their average rank); NaN for fewer than 2 items,
  mismatched lengths, or a constant side."""
  a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
  # Checked here rather than left to scipy, which would warn (ConstantInputWarning) on every call.
  if a.shape != b.shape or a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return math.nan
  return float(scipy.stats.spearmanr(a, b).statistic)


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
