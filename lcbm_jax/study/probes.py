"""Content-understanding probes: score every label answer after one neutral question, item by item.

The labelled questions (`data_pipeline.world.knowledge`, built as a llava_json data dir) ask each test
item's tone, topic and memorability. A model answers by scoring: log p(answer </s> | image, question)
for every answer the question can have ("Cheerful." ... "Peaceful.", "00." ... "99."), exactly
Behavior-LLaVA's zero-shot protocol (the label words' likelihood, no free generation). The same
function scores a fine-tuned model on the same items, so zero-shot and fine-tuned rows compare.

Returns per-item values for the study's bootstrap: tone and topic a hit (1/0) per item, memorability
(expected value of the 00-99 answers under their renormalised probabilities, truth) per item.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

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


def majority_rate(labels_dir: str, cfg, tokenizer, task: str, test_ids: Sequence[str]) -> float:
  """How often the training split's most common answer to `task` is right on the test items."""
  codec = Codec(tokenizer, cfg.num_image_tokens)
  data = EvalData(labels_dir, codec, cfg, None, {})
  train = [e.verbalized.target.strip() for e in data.examples("train", "instruction") if _task_of(e) == task]
  test = {e.record.record_id.rpartition("/")[0]: e.verbalized.target.strip()
          for e in data.examples("test", "instruction") if _task_of(e) == task}
  majority = max(sorted(set(train)), key=train.count)
  return float(np.mean([test[i] == majority for i in test_ids]))
