"""A tokenizer trained from scratch on a built corpus's verbalizations: the one recipe for the trainer
(a run without `data.tokenizer`), `lcbm data inspect` and `lcbm bench data`.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from data_pipeline import pipeline, verbalize
from data_pipeline.tokenizer import Tokenizer

# The vocabulary `lcbm data inspect` and `lcbm bench data` train: seconds to train, and the embedded
# corpus's words fit in it.
QUICK_VOCAB_SIZE = 2000


def train_corpus_tokenizer(corpus: pipeline.Corpus, tasks: Sequence[str], *, vocab_size: int, max_images: int,
                           seed: int, max_records: int = 3000,
                           out_dir: str | os.PathLike | None = None, twins: bool = False) -> Tokenizer:
  """SentencePiece trained on every `tasks` verbalization of the corpus's first `max_records` records.

  One random stream (`default_rng(seed)`) draws the verbalizations in record-then-task order, so the
  model's bytes are a function of (corpus, tasks, vocab_size, max_images, seed, max_records). Saved
  to `out_dir` when given. `twins`: also every content-only twin's text (a tokenizer shared by a
  behavior arm and its control, so neither arm's text is the one split into more pieces).
  """
  rng = np.random.default_rng(seed)
  texts = []
  for i in range(min(len(corpus), max_records)):
    record = corpus[i]
    for task in tasks:
      if verbalize.applies(record, task, corpus.context):
        for twin in ((False, True) if twins else (False,)):
          texts.append(verbalize.verbalize(record, task, rng=rng, max_images=max_images, content_only=twin,
                                           context=corpus.context).text)
  return Tokenizer.train(texts, vocab_size, out_dir)
