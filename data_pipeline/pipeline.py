"""Grain input pipeline: built ArrayRecord corpora -> packed, process-sharded, resumable batches.

  config = PipelineConfig(data_dir="data/built", tokenizer="data/tok", tasks=(("behavior_simulation", 1.0),))
  it = make_iterator(config)                    # validates everything before any work starts
  batch = next(it)                              # dict of numpy arrays, contract §5
  state = it.get_state(); it.set_state(state)   # JSON-serialisable; exact mid-epoch resume
  gbatch = sharding.make_global(batch, mesh)    # lcbm_jax.sharding: jax.Arrays on the mesh (multi-host safe)

Per sample, in Grain (worker processes when `worker_count > 0`), a list of named transforms:
`ReadRecord` (epoch shuffle, process shard, record + media bytes) -> `Verbalize` (a task drawn
from the weighted mixture, deterministic per (seed, epoch, record)) -> `Tokenize` (segments ->
ids, `<image>` expanded, target flags) -> `DecodeMedia` (Pillow decode of the keyframes
`Verbalized.frame_indices` names, CLIP resize/crop, normalised with the model config's mean and
std). Sample order does not depend on the worker count: Grain hands out elements round-robin in
index order, so 0 and 2 workers give the same batches.

A sample that cannot be used never disappears: it flows on as a quarantine marker carrying its
reason (`no_task`, `verbalize_error`, `too_long`, or a media reason of `records.REASONS`), and the
main process counts it (`quarantine_counts`). A media file that fails to decode in
a worker keeps its token slots (as padding) so packing, and thus the batch count, never depends on
decode results.

In the main process, samples are packed next-fit against two budgets: tokens per row (`seq_len`, at
most `max_segments` samples; `pack=False` = one sample per row) and images per group of rows (the
batch's `images_per_batch` split evenly over `image_groups` blocks of consecutive rows, one block per
data shard; `data_pipeline/batch.py`). Groups are batched, and each epoch ends with a padded partial batch. With several processes, every
process then adds empty batches up to the largest process's count for that epoch (computed by
re-running the text-only stages for the other shards: no communication, one text pass per epoch),
so all processes step together.

Iterator state is `{next_k, epoch, batches_in_epoch, ...}` where `next_k` is the first sample not
yet in an emitted batch; restoring re-slices the Grain dataset from there (next-fit packing is a
function of the sample sequence, so the same rows come out).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import sys
import threading
import time
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np
from PIL import Image

from data_pipeline import batch as batch_lib
from data_pipeline import images as images_lib
from data_pipeline import records as records_lib
from data_pipeline import verbalize
from data_pipeline.tfds_builders import builder as builder_lib
from data_pipeline import codec as codec_lib
from data_pipeline import tokenizer as tokenizer_lib
from data_pipeline.tokenizer import TextTokenizer
from lcbm_jax.errors import UserError

_STATE_VERSION = 1
MIXTURES = ("per_record", "by_weight")
_PROBE_RECORDS = 256   # records per dataset read to learn which tasks it serves (by_weight)
_INFINITE = 2 ** 62   # sample count of a num_epochs=None stream (Grain ranges are lazy)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything that determines the batches. `batch_size` is global (rows over all processes)."""
  data_dir: str
  tokenizer: str                                  # tokenizer.model or its directory
  split: str = "train"
  tasks: tuple[tuple[str, float], ...] = (("behavior_simulation", 1.0),)
  seq_len: int = 512
  batch_size: int = 8
  image_size: int = 224
  # The model config's normalisation (LCBMConfig.image_mean / image_std), so training and evaluation
  # see the pixels predict and export feed; None only for text-only use (no DecodeMedia stage).
  image_mean: tuple[float, float, float] | None = None
  image_std: tuple[float, float, float] | None = None
  # The rest of the model's preprocessing (LCBMConfig's fields of the same names; `images.ImageProcessing`):
  # short side after the resize (0 = image_size), PIL resize filter, LLaVA-1.5's pad to square.
  image_shortest_edge: int = 0
  image_resample: int = 3
  image_pad_to_square: bool = False
  max_images: int = 4                             # images per sample (verbalize keeps at most this many)
  # The image budget: images per batch over all processes (0 = batch_size x max_images, room for every
  # row to hold max_images), split evenly over `image_groups` groups of consecutive rows. The trainer
  # sets image_groups to its data shards (data x fsdp x grad_accum), so each shard encodes its own;
  # 0 = one group per process.
  images_per_batch: int = 0
  image_groups: int = 0
  num_image_tokens: int = 256                     # ids per <image> (the vision tower's patch count)
  pack: bool = True
  max_segments: int = 16                          # samples per packed row (sample_ids width)
  seed: int = 0
  num_epochs: int | None = 1                      # None = repeat forever
  worker_count: int = 0
  process_index: int = 0
  process_count: int = 1
  content_only: bool = False
  conversation: str = "plain"                     # prompt format (data_pipeline.chat.FORMATS)
  kbft_k: int = 0                                 # kbft training windows of k scenes (0 = k drawn from KBFT_K)
  # How task weights mix: "per_record" draws a task per record among those it supports (the record
  # mix follows the corpus); "by_weight" also gives each built dataset the share of every epoch its
  # tasks' weights call for (a 1:1 BLIFT + instruction mix stays 1:1 whatever the row counts).
  mixture: str = "per_record"

  @property
  def local_batch_size(self) -> int:
    return self.batch_size // self.process_count

  @property
  def segments_per_row(self) -> int:
    return self.max_segments if self.pack else 1

  @property
  def image_budget(self) -> int:
    """Images per batch over all processes."""
    return self.images_per_batch or self.batch_size * self.max_images

  @property
  def groups(self) -> int:
    """Image groups per batch over all processes."""
    return self.image_groups or self.process_count

  @property
  def local_groups(self) -> int:
    return self.groups // self.process_count

  @property
  def images_per_group(self) -> int:
    return self.image_budget // self.groups

  @property
  def rows_per_group(self) -> int:
    return self.batch_size // self.groups

  def validate(self) -> None:
    """Raises UserError naming the bad field; call before any data is read."""
    if not self.tasks:
      raise UserError("PipelineConfig.tasks is empty; give at least one (task, weight)")
    for item in self.tasks:
      if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise UserError(f"PipelineConfig.tasks entry {item!r} is not a (name, weight) pair")
      name, weight = item
      if name not in verbalize.TASKS:
        raise UserError(f"unknown task {name!r}; known: {', '.join(verbalize.TASKS)}")
      if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
        raise UserError(f"task {name!r} weight {weight!r} must be a positive number")
    if len({n for n, _ in self.tasks}) != len(self.tasks):
      raise UserError("PipelineConfig.tasks names a task twice; merge the weights")
    for field in ("seq_len", "batch_size", "image_size", "num_image_tokens", "max_segments", "process_count",
                  "groups"):
      if getattr(self, field) < 1:
        raise UserError(f"PipelineConfig.{field}={getattr(self, field)} must be >= 1")
    if self.max_images < 0 or self.worker_count < 0 or self.images_per_batch < 0:
      raise UserError("PipelineConfig.max_images, images_per_batch and worker_count must be >= 0")
    if self.kbft_k < 0:
      raise UserError(f"kbft_k={self.kbft_k} must be >= 0 (0 = k drawn from {verbalize.KBFT_K}; --config.data.kbft_k)")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise UserError(f"PipelineConfig.num_epochs={self.num_epochs} must be >= 1 (or None = forever)")
    if not 0 <= self.process_index < self.process_count:
      raise UserError(f"process_index={self.process_index} not in [0, process_count={self.process_count})")
    if self.batch_size % self.process_count:
      raise UserError(f"batch_size={self.batch_size} does not divide by process_count={self.process_count}; "
                      "use a multiple")
    if self.batch_size % self.groups or self.groups % self.process_count:
      raise UserError(f"image_groups={self.groups} must divide batch_size={self.batch_size} and be a "
                      f"multiple of process_count={self.process_count}")
    if self.image_budget % self.groups:
      raise UserError(f"images_per_batch={self.image_budget} does not split over {self.groups} data shards; "
                      f"use a multiple of {self.groups} (--config.data.images_per_batch)")
    if self.images_per_group < self.max_images:
      raise UserError(f"images_per_batch={self.image_budget} gives each of the {self.groups} data shards "
                      f"{self.images_per_group} images, fewer than one sample may hold (max_images="
                      f"{self.max_images}); raise data.images_per_batch to at least "
                      f"{self.max_images * self.groups}")
    if self.mixture not in MIXTURES:
      raise UserError(f"mixture {self.mixture!r} is not one of {', '.join(MIXTURES)} (--config.data.mixture)")
    if self.max_images * self.num_image_tokens + 8 > self.seq_len:
      raise UserError(f"seq_len={self.seq_len} cannot hold max_images={self.max_images} x "
                      f"num_image_tokens={self.num_image_tokens} image ids plus text; raise seq_len or lower them")


# ---------------------------------------------------------------------------------------------
# The corpus: every built dataset of one split under data_dir, as one random-access sequence.

class Corpus:
  """All built corpora under `data_dir` for `split`, concatenated; item i -> record with media bytes.

  Picklable (Grain workers): data sources open lazily in the process that reads.
  """

  def __init__(self, data_dir: str, split: str):
    self.data_dir = data_dir
    self.split = split
    self.parts: list[tuple[str, str, int]] = []   # (dataset name, version dir, examples)
    contexts, self.build_quarantine = [], {}
    for d in builder_lib.find_datasets(data_dir):
      info = builder_lib.read_dataset_info(d)
      ctx_path = os.path.join(d, builder_lib.CONTEXT_FILE)
      if os.path.exists(ctx_path):
        with open(ctx_path) as f:
          contexts.append(json.load(f))
      q_path = os.path.join(d, builder_lib.QUARANTINE_FILE)
      if os.path.exists(q_path):
        with open(q_path) as f:
          for item in json.load(f)["items"]:
            if item["split"] == split:
              self.build_quarantine[item["reason"]] = self.build_quarantine.get(item["reason"], 0) + 1
      if split in info.split_counts:
        self.parts.append((info.name, d, info.split_counts[split]))
    if not self.parts:
      raise UserError(f"no built corpus under {data_dir} has split {split!r}")
    self.context = builder_lib.context_from_json(contexts)
    self._offsets = np.cumsum([0] + [n for _, _, n in self.parts])
    self._sources = None
    self._shares: dict = {}

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def __getstate__(self):
    return {**self.__dict__, "_sources": None}

  def __getitem__(self, i: int) -> records_lib.ContentBehaviorRecord:
    if self._sources is None:
      import tensorflow_datasets as tfds  # here: workers import it only when they read
      self._sources = [tfds.builder_from_directory(d).as_data_source(split=self.split) for _, d, _ in self.parts]
    part = int(np.searchsorted(self._offsets, i, side="right")) - 1
    ex = self._sources[part][int(i - self._offsets[part])]
    record = records_lib.ContentBehaviorRecord.from_dict(json.loads(ex["record"]))
    media = tuple(dataclasses.replace(m, data=bytes(b)) for m, b in zip(record.content.media, ex["media"]))
    return dataclasses.replace(record, content=dataclasses.replace(record.content, media=media))

  def shard_size(self, process_index: int, process_count: int) -> int:
    return len(range(process_index, len(self), process_count))

  def dataset_shares(self, tasks: Sequence[tuple[str, float]]) -> np.ndarray:
    """Each dataset's share of an epoch under `by_weight` mixing: task t's weight is split over the
    datasets it applies to (in proportion to their sizes), and a dataset gets the sum over its tasks.
    Which tasks a dataset serves is read off `_PROBE_RECORDS` evenly spaced records of it."""
    key = tuple((name, float(w)) for name, w in tasks)
    if key not in self._shares:
      self._shares[key] = self._dataset_shares(key)
    return self._shares[key]

  def _dataset_shares(self, tasks) -> np.ndarray:
    total = sum(w for _, w in tasks)
    serves = np.zeros((len(self.parts), len(tasks)), bool)
    for d in range(len(self.parts)):
      start, n = int(self._offsets[d]), int(self._offsets[d + 1] - self._offsets[d])
      for i in np.unique(np.linspace(0, n - 1, min(n, _PROBE_RECORDS)).astype(np.int64)):
        record = self[start + int(i)]
        serves[d] |= [verbalize.applies(record, name, self.context) for name, _ in tasks]
        if serves[d].all():
          break
    sizes = np.diff(self._offsets).astype(np.float64)
    shares = np.zeros(len(self.parts))
    for t, (name, weight) in enumerate(tasks):
      if not serves[:, t].any():
        raise UserError(f"task {name!r} applies to no record of {self.data_dir} ({self.split}); "
                        "drop it from data.tasks or build a source it reads")
      pool = sizes * serves[:, t]
      shares += weight / total * pool / pool.sum()
    return shares

  def epoch_order(self, seed: int, epoch: int, shares: np.ndarray | None) -> np.ndarray:
    """The global record indices of one epoch (len(self) of them): a permutation of the corpus, or with
    `shares` that many draws per dataset (each cycling through its own permutation), shuffled."""
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    if shares is None:
      return rng.permutation(len(self))
    n = len(self)
    counts = np.floor(shares * n).astype(np.int64)
    for d in np.argsort(-(shares * n - counts), kind="stable")[:n - counts.sum()]:
      counts[d] += 1   # largest remainders, so the counts add up to the epoch length
    parts = []
    for d, c in enumerate(counts):
      size = int(self._offsets[d + 1] - self._offsets[d])
      reps = -(-int(c) // size) if c else 0
      order = np.concatenate([rng.permutation(size) for _ in range(reps)]) if reps else np.zeros(0, np.int64)
      parts.append(self._offsets[d] + order[:c])
    return rng.permutation(np.concatenate(parts))


def sample_id(record_id: str, task: str, epoch: int) -> int:
  """Stable 63-bit id of (record, task, epoch); identical across processes and runs."""
  h = hashlib.blake2b(f"{record_id}\x00{task}\x00{epoch}".encode(), digest_size=8).digest()
  return int.from_bytes(h, "little") & (2 ** 63 - 1)


def _marker(elem: dict, reason: str, detail: str, *, slot: bool = False) -> dict:
  elem.update(quarantine=reason, detail=detail, slot=slot)
  return elem


# ---------------------------------------------------------------------------------------------
# Per-sample transforms (run in Grain workers). Each validates its arguments when constructed.

class ReadRecord(grain.transforms.Map):
  """Sample number k -> (epoch, global record index) via a per-epoch shuffle and process shard."""

  def __init__(self, corpus: Corpus, seed: int, process_index: int, process_count: int,
               shares: np.ndarray | None = None):
    self.corpus, self.seed, self.shares = corpus, seed, shares
    self.process_index, self.process_count = process_index, process_count
    self.epoch_size = corpus.shard_size(process_index, process_count)
    if self.epoch_size == 0:
      raise UserError(f"split {corpus.split!r} has {len(corpus)} records: too few for {process_count} processes")
    self._perm = (-1, None)

  def map(self, k: int) -> dict:
    epoch, j = divmod(int(k), self.epoch_size)
    perm_epoch, perm = self._perm   # one permutation per epoch, cached; one tuple, so threads never see half
    if perm_epoch != epoch:
      perm = self.corpus.epoch_order(self.seed, epoch, self.shares)
      self._perm = (epoch, perm)
    index = int(perm[self.process_index + j * self.process_count])
    record = self.corpus[index]
    return {"k": int(k), "epoch": epoch, "index": index, "record_id": record.record_id, "record": record,
            "quarantine": "", "detail": "", "slot": False}


class Verbalize(grain.transforms.Map):
  """Draws a task (weights renormalised over the tasks this record supports) and verbalizes it."""

  def __init__(self, tasks: Sequence[tuple[str, float]], context: verbalize.Context, seed: int, max_images: int,
               content_only: bool, kbft_k: int = 0):
    for name, _ in tasks:
      if name not in verbalize.TASKS:
        raise UserError(f"unknown task {name!r}; known: {', '.join(verbalize.TASKS)}")
    self.names = [n for n, _ in tasks]
    self.weights = np.array([w for _, w in tasks], np.float64)
    self.context, self.seed, self.max_images, self.content_only = context, seed, max_images, content_only
    # A fixed k for kbft windows (k-BFT arms); 0 leaves the draw from KBFT_K, and the rng stream, as it was.
    self.options = {"kbft": {"k": kbft_k}} if kbft_k else {}

  def map(self, elem: dict) -> dict:
    if elem["quarantine"]:
      return elem
    record = elem.pop("record")
    ok = np.array([verbalize.applies(record, n, self.context) for n in self.names])
    if not ok.any():
      return _marker(elem, "no_task", f"{record.source} record fits none of {', '.join(self.names)}")
    rng = np.random.default_rng([self.seed, elem["epoch"], elem["index"]])
    p = np.where(ok, self.weights, 0.0)
    task_id = int(rng.choice(len(self.names), p=p / p.sum()))
    task = self.names[task_id]
    try:
      v = verbalize.verbalize(record, task, rng=rng, max_images=self.max_images, content_only=self.content_only,
                              context=self.context, **self.options.get(task, {}))
    except ValueError as e:   # a template that cannot use this record's values
      return _marker(elem, "verbalize_error", f"{task}: {e}")
    elem.update(verbalized=v, task_id=task_id, sample_id=sample_id(record.record_id, task, elem["epoch"]))
    return elem


class Tokenize(grain.transforms.Map):
  """Verbalized -> `<s>` ids `</s>` with `<image>` expanded and target flags (`codec.Codec.encode`), in
  the conversation format `conversation` (`data_pipeline.chat`)."""

  def __init__(self, tokenizer: TextTokenizer, num_image_tokens: int, seq_len: int, conversation: str = "plain"):
    if num_image_tokens < 1:
      raise UserError(f"num_image_tokens={num_image_tokens} must be >= 1")
    self.codec, self.seq_len = codec_lib.Codec(tokenizer, num_image_tokens, conversation), seq_len

  def map(self, elem: dict) -> dict:
    if elem["quarantine"]:
      return elem
    v = elem["verbalized"]
    enc = self.codec.encode(v)
    if len(enc.ids) > self.seq_len:
      return _marker(elem, "too_long", f"{len(enc.ids)} tokens > seq_len {self.seq_len}")
    elem.update(tokens=enc.ids, flags=enc.flags, n_images=len(v.media))
    return elem


class DecodeMedia(grain.transforms.Map):
  """Decodes each `<image>`'s media (the named keyframe for videos) -> float32[n, S, S, 3], preprocessed
  as the model's image processor (`images.ImageProcessing`: the config's mean / std, resize, pad)."""

  def __init__(self, image_size: int, mean: Sequence[float] | None, std: Sequence[float] | None, *,
               shortest_edge: int = 0, resample: int = 3, pad_to_square: bool = False):
    self.processing = _image_processing(image_size, mean, std, shortest_edge=shortest_edge, resample=resample,
                                       pad_to_square=pad_to_square)

  def map(self, elem: dict) -> dict:
    v = elem.pop("verbalized", None)
    if elem["quarantine"]:
      return elem
    try:
      images = [_decode(m.data, f, self.processing) for m, f in zip(v.media, v.frame_indices)]
    except records_lib.RecordError as e:
      # Keeps its token slots: packing (and the batch count) must not depend on decode results.
      return _marker(elem, e.reason, e.detail, slot=True)
    s = self.processing.crop_size
    elem["images"] = np.stack(images) if images else np.zeros((0, s, s, 3), np.float32)
    return elem


def _image_processing(size: int, mean: Sequence[float] | None, std: Sequence[float] | None, *,
                     shortest_edge: int = 0, resample: int = 3, pad_to_square: bool = False
                     ) -> images_lib.ImageProcessing:
  """The pipeline's image settings (PipelineConfig's `image_*` fields) -> ImageProcessing; UserError
  names a bad one."""
  if mean is None or std is None:
    raise UserError(f"image mean {mean} / std {std}: decoding images needs 3 values each (RGB, std > 0); "
                    "pass the model config's (LCBMConfig.image_mean / image_std)")
  return images_lib.ImageProcessing(crop_size=size, mean=tuple(mean), std=tuple(std), shortest_edge=shortest_edge,
                                    resample=resample, pad_to_square=pad_to_square)


def decode_image(data: bytes | None, frame: int, size: int, mean: Sequence[float], std: Sequence[float], *,
                 shortest_edge: int = 0, resample: int = 3, pad_to_square: bool = False) -> np.ndarray:
  """float32[size, size, 3]: frame `frame` of `data`, preprocessed (`images.preprocess`) with the model's
  settings. RecordError("corrupt_media") if it does not decode."""
  return _decode(data, frame, _image_processing(size, mean, std, shortest_edge=shortest_edge, resample=resample,
                                               pad_to_square=pad_to_square))


def _decode(data: bytes | None, frame: int, processing: images_lib.ImageProcessing) -> np.ndarray:
  if not data:
    raise records_lib.RecordError("corrupt_media", "no media bytes")
  try:
    with Image.open(io.BytesIO(data)) as img:
      if frame:
        img.seek(frame)
      img.load()
      return images_lib.preprocess(img, processing)
  except (OSError, ValueError, SyntaxError, EOFError) as e:
    raise records_lib.RecordError("corrupt_media", f"frame {frame}: {type(e).__name__}: {e}") from None


def build_transforms(config: PipelineConfig, corpus: Corpus, tokenizer: TextTokenizer, *,
                     process_index: int | None = None, decode: bool = True) -> list[grain.transforms.Map]:
  """The per-sample transform list (`decode=False`: text-only, for counting another shard's rows)."""
  p = config.process_index if process_index is None else process_index
  transforms = [
      ReadRecord(corpus, config.seed, p, config.process_count,
                 corpus.dataset_shares(config.tasks) if config.mixture == "by_weight" else None),
      Verbalize(config.tasks, corpus.context, config.seed, config.max_images, config.content_only, config.kbft_k),
      Tokenize(tokenizer, config.num_image_tokens, config.seq_len, config.conversation),
  ]
  if decode:
    transforms.append(DecodeMedia(config.image_size, config.image_mean, config.image_std,
                                  shortest_edge=config.image_shortest_edge, resample=config.image_resample,
                                  pad_to_square=config.image_pad_to_square))
  return transforms


def text_only_epoch(config: PipelineConfig, corpus: Corpus, tokenizer: TextTokenizer, process_index: int,
                    epoch: int) -> Iterator[dict]:
  """One process's samples of one epoch through the text-only stages, in the main process."""
  transforms = build_transforms(config, corpus, tokenizer, process_index=process_index, decode=False)
  size = corpus.shard_size(process_index, config.process_count)
  for k in range(epoch * size, (epoch + 1) * size):
    elem = k
    for t in transforms:
      elem = t.map(elem)
    yield elem


# ---------------------------------------------------------------------------------------------
# Packing and batch assembly (main process).

class Packer:
  """Next-fit packing against two budgets: a group of `rows` rows of `seq_len` tokens shares `images`
  image slots. The current row closes when the next sample's tokens or segment would not fit; the
  group closes when that happens on its last row, or when the sample's images would not fit the
  group's budget (its remaining rows stay padding). A group is a function of the samples from its
  first one on, which is what makes the iterator resumable from a sample index."""

  def __init__(self, seq_len: int, max_segments: int, rows: int = 1, images: int = 1 << 30):
    self.seq_len, self.max_segments, self.rows, self.images = seq_len, max_segments, rows, images
    self.group: list[list[dict]] = []
    self._tokens = self._images = 0

  def add(self, elem: dict) -> list[list[dict]] | None:
    """Adds a sample; returns the group it closed, if any."""
    n, m = len(elem["tokens"]), elem["n_images"]
    closed = None
    if self.group:
      row = self.group[-1]
      fits_row = self._tokens + n <= self.seq_len and len(row) < self.max_segments
      if self._images + m > self.images or (not fits_row and len(self.group) == self.rows):
        closed = self.flush()
      elif not fits_row:
        self.group.append([])
        self._tokens = 0
    if not self.group:
      self.group = [[]]
    self.group[-1].append(elem)
    self._tokens += n
    self._images += m
    return closed

  def flush(self) -> list[list[dict]] | None:
    group, self.group = self.group, []
    self._tokens = self._images = 0
    return group or None

  @property
  def first(self) -> dict | None:
    """The group's first sample (None when empty)."""
    return self.group[0][0] if self.group else None


def packer(config: PipelineConfig) -> Packer:
  """The Packer of `config`'s budgets: its rows per group and images per group."""
  return Packer(config.seq_len, config.segments_per_row, config.rows_per_group, config.images_per_group)


def assemble(groups: Sequence[Sequence[Sequence[dict]]], config: PipelineConfig, pad_id: int,
             image_id: int) -> dict[str, np.ndarray]:
  """Groups of rows of samples -> this process's contract §5 batch (groups beyond len(groups) are
  padding). The j-th `image_id` token of a sample whose images start at slot i takes feature
  i * P + j of its group (P = num_image_tokens)."""
  rows_per_group, p = config.rows_per_group, config.num_image_tokens
  batch = batch_lib.empty_batch(config.local_batch_size, config.seq_len, config.local_groups,
                                config.images_per_group, config.image_size, config.segments_per_row, pad_id)
  for g, group in enumerate(groups):
    slot = 0
    for i, row in enumerate(group):
      r, off, seg = g * rows_per_group + i, 0, 0
      for e in row:
        n = len(e["tokens"])
        if not e["quarantine"]:   # decode-quarantined samples stay padding (their slots are reserved)
          sl = slice(off, off + n)
          tokens = np.asarray(e["tokens"])
          batch["input_ids"][r, sl] = tokens
          batch["segment_ids"][r, sl] = seg + 1
          batch["positions"][r, sl] = np.arange(n)
          batch["targets"][r, off:off + n - 1] = tokens[1:]
          batch["loss_mask"][r, off:off + n - 1] = e["flags"][1:]
          batch["task_ids"][r, sl] = e["task_id"]
          batch["sample_ids"][r, seg] = e["sample_id"]
          k = len(e["images"])
          batch["images"][g, slot:slot + k] = e["images"]
          is_image = tokens == image_id
          batch["image_index"][r, sl][is_image] = slot * p + np.arange(int(is_image.sum()))
          seg += 1
        slot += e["n_images"]
        off += n
  return batch


# ---------------------------------------------------------------------------------------------
# The iterator.

class DataIterator:
  """Batches (contract §5) for one process; checkpointable with get_state/set_state."""

  def __init__(self, config: PipelineConfig, corpus: Corpus, tokenizer: TextTokenizer,
               transforms: Sequence[grain.transforms.Map], state: Mapping[str, Any] | None = None):
    self.config, self.corpus, self.tokenizer = config, corpus, tokenizer
    self._transforms = list(transforms)
    self.epoch_size = corpus.shard_size(config.process_index, config.process_count)
    self._total = _INFINITE if config.num_epochs is None else self.epoch_size * config.num_epochs
    self._targets: dict[int, int] = {}
    self.quarantine_examples: dict[str, list[tuple[str, str]]] = {}
    self._it = None
    self.set_state(state)

  # -- state ------------------------------------------------------------------------------

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable position: resuming from it yields exactly the batches that would follow."""
    return {"version": _STATE_VERSION, "next_k": self._pos, "epoch": self._epoch,
            "batches_in_epoch": self._batches_in_epoch, "quarantine": dict(self.quarantine_counts),
            "tokens": self.real_tokens, "slots": self.token_slots, "batches": self.batches}

  def set_state(self, state: Mapping[str, Any] | None) -> None:
    state = dict(state or {"version": _STATE_VERSION, "next_k": 0, "epoch": 0, "batches_in_epoch": 0})
    if state.get("version") != _STATE_VERSION:
      raise UserError(f"data iterator state version {state.get('version')} != {_STATE_VERSION}; "
                      "it was saved by another lcbm version")
    self._pos = int(state["next_k"])
    self._epoch = int(state["epoch"])
    self._batches_in_epoch = int(state["batches_in_epoch"])
    self.quarantine_counts: dict[str, int] = dict(state.get("quarantine", {}))
    self.real_tokens = int(state.get("tokens", 0))
    self.token_slots = int(state.get("slots", 0))
    self.batches = int(state.get("batches", 0))
    self._packer = packer(self.config)
    self._closed: list[list[dict]] = []
    self._pending: dict | None = None
    self._uncounted: list[dict] = []      # quarantined samples not yet behind an emitted batch
    self._next_read = self._pos
    self._done = False
    self.close()   # the Grain iterator (and its workers) starts at the first read

  def close(self) -> None:
    """Stops the Grain worker processes (also done when the iterator is garbage-collected)."""
    if self._it is not None:
      self._it.close()
      self._it = None

  def _open(self, k: int) -> Iterator[dict]:
    ds = grain.MapDataset.range(k, max(k, self._total))
    for t in self._transforms:
      ds = ds.map(t)
    # Threads inside each reader overlap Pillow decoding (it releases the GIL).
    ids = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=16))
    if self.config.worker_count > 0:
      _allow_grain_flags()
      ids = ids.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.config.worker_count,
                                                         per_worker_buffer_size=4),
                            worker_init_fn=functools.partial(exit_with_parent, os.getpid()))
    return iter(ids)

  # -- iteration --------------------------------------------------------------------------

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    groups_per_batch = self.config.local_groups
    while True:
      if len(self._closed) >= groups_per_batch:
        return self._emit(self._closed[:groups_per_batch])
      elem = self._peek()
      if elem is None or elem["epoch"] != self._epoch:
        # End of an epoch: pad the partial batch, then add empty batches up to the largest process's count.
        group = self._packer.flush()
        if group:
          self._closed.append(group)
        if self._closed:
          return self._emit(self._closed[:])
        if self._batches_in_epoch < self._epoch_target(self._epoch):
          return self._emit([])
        if self._batches_in_epoch == 0:
          # Every sample was quarantined: with num_epochs=None this would otherwise spin forever.
          self._count_quarantine(self._total if elem is None else elem["k"])
          self.close()
          reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.quarantine_counts.items())) or "none"
          raise UserError(
              f"epoch {self._epoch} of split {self.config.split!r} in {self.config.data_dir} gave no usable "
              f"sample (quarantined by reason: {reasons}); raise seq_len (too_long) or pick tasks this "
              "data supports (no_task)")
        if elem is None:
          self._count_quarantine(self._total)
          self.close()
          self._done = True
          raise StopIteration
        self._epoch, self._batches_in_epoch = elem["epoch"], 0
        continue
      self._pending = None
      if elem["quarantine"]:
        self._uncounted.append(elem)
        if not elem["slot"]:
          continue
      group = self._packer.add(elem)
      if group:
        self._closed.append(group)

  def _peek(self) -> dict | None:
    if self._pending is None and self._next_read < self._total and not self._done:
      if self._it is None:
        self._it = self._open(self._next_read)
      elem = next(self._it)
      self._next_read = elem["k"] + 1
      if "images" in elem:   # own the pixels (a worker hands over shared memory)
        elem["images"] = np.array(elem["images"])
      self._pending = elem
    return self._pending

  def _emit(self, groups: list[list[list[dict]]]) -> dict[str, np.ndarray]:
    cfg = self.config
    del self._closed[:len(groups)]
    batch = assemble(groups, cfg, self.tokenizer.pad_id, self.tokenizer.image_id)
    firsts = [g[0][0]["k"] for g in self._closed] + ([self._packer.first["k"]] if self._packer.first else [])
    if self._pending is not None:
      firsts.append(self._pending["k"])
    self._pos = min(firsts) if firsts else self._next_read
    self._count_quarantine(self._pos)
    self._batches_in_epoch += 1
    self.batches += 1
    self.real_tokens += int((batch["segment_ids"] > 0).sum())
    self.token_slots += batch["segment_ids"].size
    return batch

  def _count_quarantine(self, pos: int) -> None:
    keep = []
    for e in self._uncounted:
      if e["k"] < pos:
        self.quarantine_counts[e["quarantine"]] = self.quarantine_counts.get(e["quarantine"], 0) + 1
        examples = self.quarantine_examples.setdefault(e["quarantine"], [])
        if len(examples) < 5:
          examples.append((e["record_id"], e["detail"]))
      else:
        keep.append(e)
    self._uncounted = keep

  def _epoch_target(self, epoch: int) -> int:
    """Batches every process emits in `epoch`: the most any process's shard packs into."""
    cfg = self.config
    if cfg.process_count == 1:
      return self._batches_in_epoch
    if epoch not in self._targets:
      counts = [self._batches_in_epoch] + [self._count_batches(q, epoch) for q in range(cfg.process_count)
                                           if q != cfg.process_index]
      self._targets[epoch] = max(counts)
    return self._targets[epoch]

  def _count_batches(self, process_index: int, epoch: int) -> int:
    """Batches process `process_index` emits in `epoch`, from its text-only stages (no decoding)."""
    cfg = self.config
    pack, groups = packer(cfg), 0
    for elem in text_only_epoch(cfg, self.corpus, self.tokenizer, process_index, epoch):
      if elem["quarantine"] and not elem["slot"]:
        continue
      groups += pack.add(elem) is not None
    groups += pack.flush() is not None
    return -(-groups // cfg.local_groups)

  @property
  def packing_efficiency(self) -> float:
    """Real tokens / token slots over the batches emitted so far."""
    return self.real_tokens / self.token_slots if self.token_slots else 0.0

  def quarantine_totals(self) -> dict[str, int]:
    """Build-time (this split, all processes) plus read-time (this process) quarantine counts."""
    out = dict(self.corpus.build_quarantine)
    for reason, n in self.quarantine_counts.items():
      out[reason] = out.get(reason, 0) + n
    return out


# How often a worker checks that its trainer still lives: a killed trainer's workers are gone
# within this (plus the resource tracker's cleanup of their shared memory, well under a second).
PARENT_POLL_S = 0.2


def exit_with_parent(parent_pid: int, worker_index: int = 0, worker_count: int = 0) -> None:
  """Grain's `worker_init_fn`: the worker exits as soon as its trainer is gone, SIGKILL included.

  A daemon thread polls `os.getppid()`, which changes only when the whole parent process has died
  (the worker is re-parented). PR_SET_PDEATHSIG is not used: it fires when the *thread* that started
  the worker exits, and Grain starts workers from its own helper threads, so it could kill a worker
  under a live trainer. Once the workers are gone, multiprocessing's resource tracker sees its pipe
  close (they held it open) and exits after unlinking their shared memory.
  """
  del worker_index, worker_count

  def watch():
    while os.getppid() == parent_pid:
      time.sleep(PARENT_POLL_S)
    os._exit(1)   # nothing to flush: the data went to a trainer that no longer exists

  if os.getppid() != parent_pid:   # the trainer died while this worker was starting
    os._exit(1)
  threading.Thread(target=watch, name="lcbm-exit-with-parent", daemon=True).start()


def _allow_grain_flags() -> None:
  # Grain's worker processes read absl flags; under argparse/pytest nobody parsed them.
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_iterator(config: PipelineConfig, state: Mapping[str, Any] | None = None) -> DataIterator:
  """Validates `config`, opens the corpus and tokenizer, and returns the batch iterator."""
  config.validate()
  tokenizer = tokenizer_lib.load(config.tokenizer)
  corpus = Corpus(config.data_dir, config.split)
  return DataIterator(config, corpus, tokenizer, build_transforms(config, corpus, tokenizer), state)


# ---------------------------------------------------------------------------------------------
# Evaluation: one un-packed sample at a time.

@dataclasses.dataclass(frozen=True)
class EvalExample:
  record: records_lib.ContentBehaviorRecord   # media bytes included; `latent` holds no labels here
  verbalized: verbalize.Verbalized
  prompt_ids: np.ndarray      # int32[n]: <s> + prompt, <image> expanded (exactly the training prefix)
  target_ids: np.ndarray      # int32[m]: the target tokens + </s>
  images: np.ndarray          # float32[k, S, S, 3], k = number of <image> in the prompt
  answer: Any


def eval_examples(data_dir: str, split: str, task: str, *, codec: codec_lib.Codec,
                  image_mean: Sequence[float], image_std: Sequence[float], image_size: int = 224,
                  image_shortest_edge: int = 0, image_resample: int = 3, image_pad_to_square: bool = False,
                  max_images: int = 4, max_examples: int | None = None,
                  seed: int = 0, content_only: bool = False, **task_options) -> Iterator[EvalExample]:
  """Records of `split` that support `task`, verbalized deterministically (rng per (seed, record)) and
  encoded by `codec` exactly as training encodes them; images preprocessed with the `image_*`
  settings (PipelineConfig's fields of the same names).

  A record whose media fails to decode (or whose template fails) is skipped and counted on stderr.
  `task_options` go to `verbalize.verbalize` (e.g. kbft `regime="past"`).
  """
  if task not in verbalize.TASKS:
    raise UserError(f"unknown task {task!r}; known: {', '.join(verbalize.TASKS)}")
  processing = _image_processing(image_size, image_mean, image_std, shortest_edge=image_shortest_edge,
                                resample=image_resample, pad_to_square=image_pad_to_square)
  corpus = Corpus(data_dir, split)
  yielded, bad = 0, {}
  for i in range(len(corpus)):
    if max_examples is not None and yielded >= max_examples:
      break
    record = corpus[i]
    if not verbalize.applies(record, task, corpus.context):
      continue
    try:
      v = verbalize.verbalize(record, task, rng=np.random.default_rng([seed, i]), max_images=max_images,
                              content_only=content_only, context=corpus.context, **task_options)
    except ValueError:   # a template that cannot use this record's values (counted as in training)
      bad["verbalize_error"] = bad.get("verbalize_error", 0) + 1
      continue
    try:
      images = [_decode(m.data, f, processing) for m, f in zip(v.media, v.frame_indices)]
    except records_lib.RecordError as e:
      bad[e.reason] = bad.get(e.reason, 0) + 1
      continue
    enc = codec.encode(v)
    yield EvalExample(record=record, verbalized=v, prompt_ids=enc.prompt_ids, target_ids=enc.target_ids,
                      images=np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.float32),
                      answer=v.answer)
    yielded += 1
  if bad:
    print(f"eval_examples({split}, {task}): quarantined {bad}", file=sys.stderr)

