"""Model access for evaluation: batched greedy generation and prefix-shared option scoring.

Text goes in and out through the codec, token ids through `lcbm_jax.inference`; this module only
groups examples into calls of few distinct shapes (so few compilations) and shows progress.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from data_pipeline.codec import Codec
from lcbm_jax import inference

ROWS_PER_CALL = 64   # continuation rows sharing one prefill (bounds the tiled KV cache)


class Runner:
  """Wraps (cfg, params, codec) with batched, progress-reporting generate and score calls."""

  def __init__(self, cfg, params, codec: Codec, batch_size: int = 16):
    self.cfg, self.params, self.codec, self.batch_size = cfg, params, codec, batch_size

  def _image_batch(self, images: Sequence[np.ndarray]):
    if not any(len(x) for x in images):
      return None
    # Always max_images slots (unused ones zero): one compilation for any image count.
    s = self.cfg.vision.image_size
    out = np.zeros((len(images), self.cfg.max_images, s, s, 3), np.float32)
    for i, x in enumerate(images):
      out[i, :len(x)] = x
    return out

  def generate(self, prompts: Sequence[Sequence[int]], images: Sequence[np.ndarray], max_new_tokens: int,
               desc: str) -> list[str]:
    """Greedy continuations as text, batched by prompt length."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    b = self.batch_size
    for start in tqdm(range(0, len(order), b), desc=desc, unit="batch", file=sys.stderr, leave=False):
      idx = order[start:start + b]
      # Batch sizes are powers of two (a short last batch is padded to the next one), so few shapes compile.
      rows = idx + [idx[-1]] * (min(b, 1 << (len(idx) - 1).bit_length()) - len(idx))
      new = inference.generate(self.cfg, self.params, [prompts[i] for i in rows],
                               self._image_batch([images[i] for i in rows]),
                               max_new_tokens=max_new_tokens, eos_id=self.codec.tokenizer.eos_id)
      for i, ids in zip(idx, new):
        out[i] = self.codec.decode(ids)
    return out

  def score_options(self, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[Sequence[int]]],
                    images: Sequence[np.ndarray], desc: str) -> list[np.ndarray]:
    """Summed log p(option | prompt, images) for every option of every prompt: one float64[K_i] each.

    Examples go in groups sharing one call: options are padded to K (a power of two, at most
    ROWS_PER_CALL; more are split into chunks) and B * K <= ROWS_PER_CALL rows per call.
    """
    k_max = max((len(o) for o in options), default=0)
    k = min(ROWS_PER_CALL, 1 << max(0, (k_max - 1).bit_length()))
    b = max(1, ROWS_PER_CALL // k)
    out = [np.zeros(len(o)) for o in options]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in tqdm(range(0, len(order), b), desc=desc, unit="batch", file=sys.stderr, leave=False):
      idx = order[start:start + b]
      idx = idx + [idx[-1]] * (b - len(idx))
      for lo in range(0, k_max, k):
        chunk = [list(options[i][lo:lo + k]) for i in idx]
        scores = inference.score_options(self.cfg, self.params, [prompts[i] for i in idx], chunk,
                                         self._image_batch([images[i] for i in idx]), k)
        for row, i in enumerate(idx):
          n = len(chunk[row])
          out[i][lo:lo + n] = scores[row, :n]
    return out

  def generate_answers(self, examples, desc: str, cap: int = 256) -> list[str]:
    """Greedy generations for eval examples, with room for the longest reference answer plus slack (a
    model that rambles is cut off and parsed), rounded up to a power of two so tasks share compilations."""
    need = max(len(e.target_ids) for e in examples) + 8
    return self.generate([e.prompt_ids for e in examples], [e.images for e in examples],
                         min(cap, 1 << max(5, (need - 1).bit_length())), desc)
