"""Content-understanding probes: score every label answer after one neutral question, item by item.

The labelled questions (`data_pipeline.world.knowledge`, built as a llava_json data dir) ask each test
item's tone, topic and memorability. A model answers by scoring: log p(answer </s> | image, question)
for every answer the question can have ("Cheerful." ... "Peaceful.", "00." ... "99."), exactly
Behavior-LLaVA's zero-shot protocol (the label words' likelihood, no free generation). The same
function scores a fine-tuned model on the same items, so zero-shot and fine-tuned rows compare.

Returns per-item values for the study's bootstrap: tone and topic a hit (1/0) per item, memorability
(expected value of the 00-99 answers under their renormalised probabilities, truth) per item.
`like_levels` reads a behavior arm's like levels the same way, by scoring.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from data_pipeline import verbalize
from data_pipeline.codec import Codec
from data_pipeline.world import knowledge
from lcbm_jax.evaluation.data import EvalData
from lcbm_jax.evaluation.runner import Runner
from lcbm_jax.errors import UserError

LABEL_TASKS = knowledge.LABEL_TASKS


def _task_of(example) -> str:
  return example.record.record_id.rpartition("/")[2]


def label_probe(cfg, params, tokenizer, labels_dir: str, *, items: int | None = None, split: str = "test",
                batch_size: int = 16, conversation: str = "plain") -> dict[str, dict]:
  """{task: {"ids": [item ids], "values": float[N, F], "options": K}} for the first `items` items of
  each label task in `split` of `labels_dir` (the same items for every model)."""
  codec = Codec(tokenizer, cfg.num_image_tokens, conversation)
  data = EvalData(labels_dir, codec, cfg, None, {})
  examples = data.examples(split, "instruction")
  runner = Runner(cfg, params, codec, batch_size)
  out = {}
  for task in LABEL_TASKS:
    ex = [e for e in examples if _task_of(e) == task][:items]
    if not ex:
      raise UserError(f"{labels_dir} has no {task} questions in its {split} split; build the label rows "
                      "that `world.generate(..., knowledge=True)` writes (labels/*.json)")
    options = knowledge.label_options(task)
    cont = [[codec.continuation(e.verbalized.prompt, o, eos=True) for o in options] for e in ex]
    scores = runner.score_options([e.prompt_ids for e in ex], cont, [e.images for e in ex], f"probe {task}")
    truth = [options.index(e.verbalized.target.strip()) for e in ex]
    if task == "memorability":
      values = np.array([[_expected(s), t] for s, t in zip(scores, truth)], np.float64)
    else:
      values = np.array([[float(int(np.argmax(s)) == t)] for s, t in zip(scores, truth)], np.float64)
    out[task] = {"ids": [e.record.record_id.rpartition("/")[0] for e in ex], "values": values.tolist(),
                 "options": len(options)}
  return out


def _expected(scores: Sequence[float]) -> float:
  """E[label] under softmax(log-likelihoods) of the answers 00..99."""
  s = np.asarray(scores, np.float64)
  p = np.exp(s - s.max())
  return float(p @ np.arange(len(s)) / p.sum())


LEVELS = ("low", "medium", "high")
# How BLIFT writes each kind's like measure (verbalize._blift_behavior), and which answer field holds it.
_LIKE_LINES = {"post": ("upvotes", lambda v: f"The post will receive {verbalize.views_in_words(v)} upvotes."),
               "video": ("likes_percent", lambda v: f"The video will be liked by {v:.1f}% of viewers.")}


def like_levels(cfg, params, tokenizer, data_dir: str, *, items: int | None = None, batch_size: int = 16) -> dict:
  """Like levels read by scoring, per kind (posts: upvotes; videos: % of viewers who like it).

  After each held-out item's BLIFT prompt, its true scene description and `>>> BEHAVIOR <<<`, the three
  levels (LCBM's cut: low < 60th percentile of the training split, high >= 90th) are scored as the
  behavior line at their training median ("The post will receive 749 upvotes."); the best is the
  predicted level. Scoring reads what the model expects without its greedy decoding's pull to one
  number. {kind: {"hits": [0/1 per item], "majority": [0/1 per item], "predicted": {level: n}}}."""
  codec = Codec(tokenizer, cfg.num_image_tokens)
  data = EvalData(data_dir, codec, cfg, items, {})
  runner = Runner(cfg, params, codec, batch_size)
  train = data.train_answers("blift")
  out = {}
  for kind, (key, line) in _LIKE_LINES.items():
    values = np.array([a[key] for a in train if a[key] is not None and (kind == "video") == (a["replay"] is not None)])
    if not values.size:
      continue
    cuts = (float(np.percentile(values, 60)), float(np.percentile(values, 90)))
    train_levels = [verbalize.like_level(v, cuts) for v in values]
    typical = {lvl: float(np.median(values[np.array(train_levels) == lvl])) for lvl in LEVELS if lvl in train_levels}
    majority = max(sorted(set(train_levels)), key=train_levels.count)
    ex = data.examples("test", "blift", where=lambda e: ((e.answer["replay"] is not None) == (kind == "video")
                                                         and e.verbalized.exact[key] is not None))
    if not ex:
      continue
    prompts = [verbalize.blift_behavior_prompt(e.verbalized, "") for e in ex]
    options = [[codec.continuation(p, line(typical[lvl]), eos=False) for lvl in typical] for p in prompts]
    scores = runner.score_options([codec.prompt_ids(p) for p in prompts], options, [e.images for e in ex],
                                  f"like levels ({kind}s)")
    predicted = [list(typical)[int(np.argmax(s))] for s in scores]
    true = [verbalize.like_level(e.verbalized.exact[key], cuts) for e in ex]
    out[kind] = {"hits": [float(p == t) for p, t in zip(predicted, true)],
                 "majority": [float(t == majority) for t in true],
                 "predicted": {lvl: predicted.count(lvl) for lvl in typical}, "typical": typical}
  return out
