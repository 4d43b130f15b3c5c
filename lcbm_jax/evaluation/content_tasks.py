"""Content simulation and content understanding tasks (LCBM, Behavior-LLaVA).

  row                          model call                 metrics (baselines fitted on the TRAIN split)
  content_simulation_choice    score the option numbers   accuracy (random = 1/options)
  tweet_generation             generate                   BLEU-1..4, ROUGE-L (a training tweet of the account)
  zero_shot_tone               score comment openings     top-1 accuracy vs latent tone (majority, random)
  zero_shot_memorability       score "00".."99"           Spearman vs latent memorability

Option scoring shares one prefill of the prompt over all options (`Runner.score_options`), so 25 or
100 candidates cost one prompt forward plus a few tokens each. The zero-shot probes continue a BLIFT
conversation past its true scene description (`verbalize.blift_behavior_prompt`) and need the
embedded corpus' hidden labels (`latent.jsonl`); on real corpora they produce no rows.
"""
from __future__ import annotations

import numpy as np

from data_pipeline import verbalize, world
from lcbm_jax.evaluation import content
from lcbm_jax.evaluation.data import EvalData
from lcbm_jax.evaluation.runner import Runner
from lcbm_jax.evaluation.table import row


def eval_content_simulation_choice(runner: Runner, data: EvalData, rng) -> dict:
  ex = data.examples("test", "content_simulation_choice")
  if not ex:
    return {}
  options = [[runner.codec.continuation(e.verbalized.prompt, text, eos=True) for _, text in e.verbalized.options]
             for e in ex]
  scores = runner.score_options([e.prompt_ids for e in ex], options, [e.images for e in ex],
                                "content_simulation_choice")
  correct = [[a for a, _ in e.verbalized.options].index(e.answer) for e in ex]
  m = content.choice_accuracy(scores, correct)
  return {"content_simulation_choice": {"accuracy": row(m["accuracy"], m["n"], random=m["random"])}}


def eval_tweet_generation(runner: Runner, data: EvalData, rng) -> dict:
  ex = data.examples("test_time", "tweet_generation")
  if not ex:
    return {}
  texts = [e.verbalized.parse(t) for t, e in zip(runner.generate_answers(ex, "tweet_generation"), ex)]
  refs = [e.answer for e in ex]
  by_account: dict[str, list[str]] = {}
  for r in data.train:
    if r.content.text.strip():
      by_account.setdefault(r.communicator.account, []).append(r.content.text)
  pool = [t for ts in by_account.values() for t in ts] or [""]
  base = [str(rng.choice(by_account.get(e.record.communicator.account, pool))) for e in ex]
  m, b = content.generation_metrics(texts, refs), content.generation_metrics(base, refs)
  return {"tweet_generation": {k: row(m[k], len(refs), train_tweet_same_account=b[k])
                               for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL")}}


def _blift_probe(runner: Runner, ex, field: str) -> tuple[list[np.ndarray], list[str]]:
  """Each BLIFT example's prompt continued to the start of a behavior `field`: (prompt ids, text)."""
  texts = [verbalize.blift_behavior_prompt(e.verbalized, field) for e in ex]
  return [runner.codec.prompt_ids(t) for t in texts], texts


def _label_continuations(runner: Runner, prompt_text: str, labels) -> list[list[int]]:
  # No EOS: a label is the start of a longer answer here, not the whole answer.
  return [runner.codec.continuation(prompt_text, label, eos=False) for label in labels]


def eval_zero_shot_tone(runner: Runner, data: EvalData, rng) -> dict:
  """Behavior-LLaVA scores label words; our models learned tone only through comments, so each tone
  is probed as the opening of a typical comment of that tone (the generator's own phrases)."""
  ex = data.examples("test", "blift", where=lambda e: "tone" in data.latent.get(e.record.record_id, {}))
  if not ex:
    return {}
  openings = world.tone_probe_openings()
  labels = list(openings)
  ids, texts = _blift_probe(runner, ex, "Top comments: 1.")
  options = [_label_continuations(runner, t, openings.values()) for t in texts]
  scores = runner.score_options(ids, options, [e.images for e in ex], "zero_shot_tone")
  # Mean log-prob per token: the openings differ in length.
  scores = [s / np.array([len(o) for o in opts]) for s, opts in zip(scores, options)]
  true = [data.latent[e.record.record_id]["tone"] for e in ex]
  m = content.label_accuracy(scores, labels, true)
  train_tones = [data.latent[r.record_id]["tone"] for r in data.train if "tone" in data.latent.get(r.record_id, {})]
  majority = max(set(train_tones), key=train_tones.count) if train_tones else labels[0]
  majority_acc = float(np.mean([t == majority for t in true]))
  return {"zero_shot_tone": {"accuracy": row(m["accuracy"], m["n"], majority=majority_acc, random=m["random"])}}


def eval_zero_shot_memorability(runner: Runner, data: EvalData, rng) -> dict:
  ex = data.examples("test", "blift", where=lambda e: (e.answer["replay"] is not None and "memorability"
                                                       in data.latent.get(e.record.record_id, {})))
  if not ex:
    return {}
  ids, texts = _blift_probe(runner, ex, "Memorability (00-99): ")
  options = [_label_continuations(runner, t, content.MEMORABILITY_LABELS) for t in texts]
  scores = runner.score_options(ids, options, [e.images for e in ex], "zero_shot_memorability")
  m = content.memorability_spearman(scores, [data.latent[e.record.record_id]["memorability"] for e in ex])
  return {"zero_shot_memorability": {"spearman": row(m["spearman"], m["n"])}}
