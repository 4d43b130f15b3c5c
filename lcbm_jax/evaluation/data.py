"""Evaluation data: the held-out examples of each task, and the training split baselines are fitted on."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from data_pipeline import pipeline, verbalize
from data_pipeline.codec import Codec
from lcbm_jax.errors import UserError


@dataclasses.dataclass
class EvalData:
  """A built data dir seen by one model: its examples (encoded by `codec`, images as `cfg` wants them),
  its training split, and the generator's hidden labels (`latent`, empty for real corpora)."""
  data_dir: str
  codec: Codec
  cfg: object
  max_examples: int | None
  latent: dict[str, dict]

  def examples(self, split: str, task: str, where=None, **options) -> list[pipeline.EvalExample]:
    """Up to max_examples eval examples of one split for which `where(example)` holds (empty if no
    built corpus has that split)."""
    try:
      pipeline.Corpus(self.data_dir, split)
    except UserError:   # no built corpus has this split (a tweets-only data dir has no "test")
      return []
    out = []
    for e in pipeline.eval_examples(
        self.data_dir, split, task, codec=self.codec, image_size=self.cfg.vision.image_size,
        image_mean=self.cfg.image_mean, image_std=self.cfg.image_std, max_images=self.cfg.max_images,
        image_shortest_edge=self.cfg.image_shortest_edge, image_resample=self.cfg.image_resample,
        image_pad_to_square=self.cfg.image_pad_to_square, **options):
      if where is None or where(e):
        out.append(e)
      if self.max_examples is not None and len(out) >= self.max_examples:
        break
    return out

  @functools.cached_property
  def train_corpus(self) -> pipeline.Corpus:
    try:
      return pipeline.Corpus(self.data_dir, "train")
    except UserError as e:
      raise UserError(f"{e}; evaluation fits its baselines on the train split of a built data dir "
                      "(`lcbm data build`)") from None

  @functools.cached_property
  def train(self) -> list:
    """Every training record (baselines are fitted on these only)."""
    return [self.train_corpus[i] for i in range(len(self.train_corpus))]

  @property
  def context(self) -> verbalize.Context:
    return self.train_corpus.context

  def train_answers(self, task: str) -> list:
    """Exact answers (`Verbalized.exact`) of the training records that take `task`."""
    rng = np.random.default_rng(0)
    return [verbalize.verbalize(r, task, rng=rng, max_images=0, context=self.context).exact
            for r in self.train if verbalize.applies(r, task, self.context)]
