"""Instruction rows about the embedded corpus's own media, in LLaVA's conversation JSON.

Every video and every Reddit post gets one conversation, with the item's record id as its `id` (as
LLaVA's ids name their image) and its media path relative to the corpus directory (LLaVA's image
folder). The first turn asks for a caption ("<image>\\nDescribe the image briefly." -> "A red star
moving fast, bright."); zero to two questions follow, answered from the scenes the generator drew:
the object, its colour and motion, the brightness, a video's number of scenes and what its first or
last scene shows. So the corpus has as many instruction rows as records the `blift` task applies to
(videos and posts), and a 1:1 mix of the two sees both equally often.

The questions never name the hidden tone or topic, nor any behavior. Rows draw from their own rng
stream, so writing them changes no other file of the corpus.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from data_pipeline.world.audience import SceneSpec
from data_pipeline.world.items import MOTION_CAPTION, article, caption

IMAGE = "<image>"
IMAGE_PROMPTS = ("Describe the image briefly.", "Give a short description of the image.",
                 "What is in this picture?")
VIDEO_PROMPTS = ("Describe the video briefly.", "Describe each scene of the video.")
# LLaVA's rows put the image before the question mostly, sometimes after it.
IMAGE_AFTER_PROMPT = 0.25


def _sentence(text: str) -> str:
  return text[0].upper() + text[1:] + "."


def _moving(spec: SceneSpec) -> str:
  return "No, it is standing still." if spec.motion == "still" else f"Yes, it is {MOTION_CAPTION[spec.motion]}."


def _image_questions(spec: SceneSpec) -> list[tuple[str, str]]:
  return [(f"What colour is the {spec.obj}?", _sentence(spec.colour)),
          ("Is the scene bright or dark?", _sentence("bright" if spec.bright else "dark")),
          ("What object is shown?", _sentence(f"{article(spec.obj)} {spec.obj}")),
          (f"Is the {spec.obj} moving?", _moving(spec))]


def _video_questions(specs: Sequence[SceneSpec]) -> list[tuple[str, str]]:
  n = len(specs)
  first, last = specs[0], specs[-1]
  return [("How many scenes does the video have?", f"{n}."),
          ("What does the first scene show?", _sentence(caption(first))),
          ("What does the last scene show?", _sentence(caption(last))),
          (f"What colour is the {first.obj} in the first scene?", _sentence(first.colour))]


def _row(item_id: str, media_key: str, path: str, prompt: str, answer: str,
         questions: list[tuple[str, str]], rng: np.random.Generator) -> dict[str, Any]:
  ask = f"{prompt}\n{IMAGE}" if rng.uniform() < IMAGE_AFTER_PROMPT else f"{IMAGE}\n{prompt}"
  turns = [("human", ask), ("gpt", answer)]
  for j in rng.choice(len(questions), size=int(rng.integers(0, 3)), replace=False):
    turns += [("human", questions[int(j)][0]), ("gpt", questions[int(j)][1])]
  return {"id": item_id, media_key: path, "conversations": [{"from": r, "value": t} for r, t in turns]}


def image_row(item_id: str, path: str, spec: SceneSpec, rng: np.random.Generator) -> dict[str, Any]:
  """The conversation about one still image (a Reddit post's PNG)."""
  prompt = IMAGE_PROMPTS[int(rng.integers(len(IMAGE_PROMPTS)))]
  return _row(item_id, "image", path, prompt, _sentence(caption(spec)), _image_questions(spec), rng)


def video_row(item_id: str, path: str, specs: Sequence[SceneSpec], rng: np.random.Generator) -> dict[str, Any]:
  """The conversation about one video (a CBC GIF, one keyframe per scene)."""
  prompt = VIDEO_PROMPTS[int(rng.integers(len(VIDEO_PROMPTS)))]
  scenes = f"{len(specs)} scene{'s' if len(specs) > 1 else ''}"
  answer = _sentence(f"{scenes}: " + "; ".join(caption(s) for s in specs))
  return _row(item_id, "video", path, prompt, answer, _video_questions(specs), rng)
