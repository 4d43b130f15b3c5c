"""`evaluate`: run a model on the held-out splits of a built data dir, model next to baselines.

  results = evaluate(cfg, params, tokenizer, data_dir, tasks=None, max_examples=100)
  print(table.format_table(results))

`results[row][metric] = {"model": float, "baselines": {name: float}, "n": int}` (table.py). The
tasks, their rows and metrics are listed in behavior_tasks.py and content_tasks.py; the model is
reached through runner.py, the data through data.py. Generation is greedy and batched.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from data_pipeline import world
from data_pipeline.codec import Codec
from lcbm_jax.errors import UserError
from lcbm_jax.evaluation import behavior_tasks, content_tasks
from lcbm_jax.evaluation.data import EvalData
from lcbm_jax.evaluation.runner import Runner

TASK_FNS = {
    "behavior_simulation": behavior_tasks.eval_behavior_simulation,
    "kbft": behavior_tasks.eval_kbft,
    "likes_high_low": behavior_tasks.eval_likes_high_low,
    "content_simulation_choice": content_tasks.eval_content_simulation_choice,
    "tweet_generation": content_tasks.eval_tweet_generation,
    "behavior_understanding": behavior_tasks.eval_behavior_understanding,
    "blift": behavior_tasks.eval_blift,
    "zero_shot_tone": content_tasks.eval_zero_shot_tone,
    "zero_shot_memorability": content_tasks.eval_zero_shot_memorability,
}
DEFAULT_TASKS = tuple(TASK_FNS)


def evaluate(cfg, params, tokenizer, data_dir: str, tasks: Sequence[str] | None = None,
             max_examples: int | None = 100, *, latent_path: str | None = None, batch_size: int = 16,
             seed: int = 0, conversation: str = "plain") -> dict:
  """Every requested task on the held-out splits of `data_dir` (a built data dir, `lcbm data build`).
  `conversation`: the prompt format the model was trained with (`data_pipeline.chat`).

  Returns {row: {metric: {"model": float, "baselines": {name: float}, "n": int}}}; tasks the data
  does not support produce no rows. `latent_path`: the generated corpus' latent.jsonl (zero-shot
  labels); found next to data_dir when None.
  """
  tasks = list(tasks or DEFAULT_TASKS)
  unknown = [t for t in tasks if t not in TASK_FNS]
  if unknown:
    raise UserError(f"unknown eval task(s) {', '.join(unknown)}; choose from {', '.join(TASK_FNS)}")
  if tokenizer is None:
    raise UserError("the checkpoint has no tokenizer; evaluation needs the one the model was trained with")
  if max_examples is not None and max_examples < 1:
    raise UserError(f"--max-examples must be >= 1, got {max_examples}")
  codec = Codec(tokenizer, cfg.num_image_tokens, conversation)
  latent = world.load_latent(latent_path or world.find_latent(data_dir))
  data = EvalData(data_dir, codec, cfg, max_examples, latent)
  data.train_corpus   # a missing or unbuilt data dir fails here, before any model work
  runner = Runner(cfg, params, codec, batch_size)
  results: dict[str, dict] = {}
  for t in tqdm(tasks, desc="eval", unit="task", file=sys.stderr):
    results.update(TASK_FNS[t](runner, data, np.random.default_rng(seed)))
  return results
