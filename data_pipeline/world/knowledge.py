"""What a content-understanding probe needs: world-knowledge text rows and labelled questions.

The free-lunch study (experiments/free_lunch.py) asks a model about the hidden labels with one neutral
question per label, the same for every arm:

  tone          "<image>\\nWhat feeling does this give? Answer with one word."  -> "Cheerful."
  topic         "<image>\\nWhat is this about? Answer with one word."           -> "Sports."
  memorability  "<image>\\nHow memorable is this, from 00 to 99?"                -> "42."

A model can only answer in those words if it has met them, so the base model's content stage also
reads text-only *knowledge* rows that tie each label word to what people and captions say: that
"this made my day" is what people say about cheerful things (tone), that a ball is about sports and
a recipe about food (topic), how memorable a fast, bright star is (memorability, the audience's own
rule in `audience.memorability`). They never pair a label with media: whether the tone of an image is
knowable from its pixels is what the study measures (Behavior-LLaVA's claim is that learning the
comments people write teaches it).

`knowledge_rows(rng)` are LLaVA conversation rows without media; `label_rows(item_id, media_key,
path, latent)` are the three labelled questions about one item, in LLaVA's conversation JSON.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from data_pipeline.world.audience import COLOURS, MOTIONS, OBJECTS, TONE_COMMENTS, TONES, TOPICS
from data_pipeline.world.items import MOTION_CAPTION, TOPIC_WORDS, article

IMAGE = "<image>"
LABEL_TASKS = ("tone", "topic", "memorability")
QUESTIONS = {"tone": "What feeling does this give? Answer with one word.",
             "topic": "What is this about? Answer with one word.",
             "memorability": "How memorable is this, from 00 to 99?"}
DISTINCT_OBJECTS = ("star", "heart", "cross")   # as audience.memorability counts them


def label_answer(task: str, value: Any) -> str:
  """The answer a label question expects: "Cheerful.", "Sports.", "07."."""
  if task == "memorability":
    return f"{int(value):02d}."
  return f"{str(value).capitalize()}."


def label_options(task: str) -> tuple[str, ...]:
  """Every answer a label question can have, in label order (what zero-shot scoring compares)."""
  values = {"tone": TONES, "topic": tuple(TOPICS), "memorability": range(100)}[task]
  return tuple(label_answer(task, v) for v in values)


def _row(item_id: str, turns: list[tuple[str, str]], media: dict | None = None) -> dict[str, Any]:
  return {"id": item_id, **(media or {}),
          "conversations": [{"from": r, "value": t} for q, a in turns for r, t in (("human", q), ("gpt", a))]}


def _memorability(obj: str, motion: str, bright: bool) -> int:
  """The audience's memorability of a one-scene item, without its noise."""
  return int(round(15 + 35 * (obj in DISTINCT_OBJECTS) + 20 * (motion == "fast") + 15 * bright))


def knowledge_rows(rng: np.random.Generator) -> list[dict[str, Any]]:
  """Text-only rows, in a fixed order: every tone phrase, every topic object and title word, every
  (object, motion, brightness) memorability, each asked in a few ways."""
  rows = []
  for tone in TONES:
    for k, phrase in enumerate(TONE_COMMENTS[tone]):
      text = phrase.format(object=OBJECTS[int(rng.integers(len(OBJECTS)))],
                           colour=list(COLOURS)[int(rng.integers(len(COLOURS)))])
      answer = label_answer("tone", tone)
      rows.append(_row(f"know-tone-{tone}-{k}", [(f'People say "{text}". What feeling is that? Answer with one word.',
                                                  answer)]))
      rows.append(_row(f"know-tone-{tone}-{k}-b", [(f'A comment reads "{text}". {QUESTIONS["tone"]}', answer)]))
  for topic, objects in TOPICS.items():
    answer = label_answer("topic", topic)
    for obj in objects:
      rows.append(_row(f"know-topic-{obj}", [(f"A picture shows {article(obj)} {obj}. {QUESTIONS['topic']}", answer)]))
    for word in TOPIC_WORDS[topic]:
      rows.append(_row(f"know-topic-{word}", [(f'A title mentions "{word}". {QUESTIONS["topic"]}', answer)]))
  for obj in OBJECTS:
    for motion in MOTIONS:
      for bright in (True, False):
        desc = f"{article(obj)} {obj} {MOTION_CAPTION[motion]}, {'bright' if bright else 'dark'}"
        rows.append(_row(f"know-mem-{obj}-{motion}-{int(bright)}",
                         [(f"A scene shows {desc}. {QUESTIONS['memorability']}",
                           label_answer("memorability", _memorability(obj, motion, bright)))]))
  return rows


def label_rows(item_id: str, media_key: str, path: str, latent: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per label question about an item (`id` = "<item id>/<label>"), its media first."""
  return [_row(f"{item_id}/{task}", [(f"{IMAGE}\n{QUESTIONS[task]}", label_answer(task, latent[task]))],
               {media_key: path}) for task in LABEL_TASKS]
