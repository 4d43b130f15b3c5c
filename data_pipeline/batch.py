"""The batch layout (docs/contracts.md §5): the one place that names its keys, dtypes and shapes.

The pipeline fills `empty_batch` (`pipeline.assemble`), the trainer compiles against `batch_spec`
(`lcbm_jax.training.train.batch_spec`), and the benchmark and the tests build synthetic batches
from `empty_batch`, so a new key or dtype changes here only.

  spec = batch_spec(rows=8, seq_len=512, groups=2, images_per_group=3, image_size=224, segments=16)
  spec["images"]                     # ((2, 3, 224, 224, 3), dtype('float32'))
  batch = empty_batch(8, 512, 2, 3, 224, 16, pad_id=3)   # all padding: nothing attends, no loss

Images travel as a budget, not as slots per row: the rows are split into `groups` equal blocks of
consecutive rows (one per data shard, so a shard's images sit with its rows), and group g's images
fill `images[g]` in order. `image_index[r, t]` says which feature an image token takes: patch p of
image slot i of the row's group is index i * P + p (P = tokens per image), -1 on every other token.
The vision tower encodes G x images_per_group images whatever the rows hold, so its cost follows
the budget the config names, not rows x slots.
"""
from __future__ import annotations

import numpy as np

# Bookkeeping keys that stay on the host (int64 needs jax x64 on a device); the step reads the rest.
HOST_KEYS = ("sample_ids",)
STEP_KEYS = ("input_ids", "images", "image_index", "segment_ids", "positions", "targets", "loss_mask", "task_ids")

# Padding values other than 0: no task (-1), no sample (-1), no image feature (-1); input_ids pad with
# the tokenizer's pad id.
_FILL = {"task_ids": -1, "sample_ids": -1, "image_index": -1}


def batch_spec(rows: int, seq_len: int, groups: int, images_per_group: int, image_size: int,
               segments: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """key -> (shape, dtype) of a batch of `rows` rows of `seq_len` tokens and `groups` x
  `images_per_group` images (`rows` a multiple of `groups`).

  input_ids, image_index, segment_ids (1, 2, ... per packed sample, 0 = padding), positions, targets,
  task_ids: int32[rows, seq_len]; loss_mask: float32[rows, seq_len]; images: float32[groups,
  images_per_group, image_size, image_size, 3]; sample_ids: int64[rows, segments].
  """
  if groups < 1 or rows % groups:
    raise ValueError(f"{rows} rows do not split into {groups} image groups")
  tokens = (rows, seq_len)
  i32, f32 = np.dtype(np.int32), np.dtype(np.float32)
  return {
      "input_ids": (tokens, i32),
      "images": ((groups, images_per_group, image_size, image_size, 3), f32),
      "image_index": (tokens, i32),
      "segment_ids": (tokens, i32),
      "positions": (tokens, i32),
      "targets": (tokens, i32),
      "loss_mask": (tokens, f32),
      "task_ids": (tokens, i32),
      "sample_ids": ((rows, segments), np.dtype(np.int64)),
  }


def empty_batch(rows: int, seq_len: int, groups: int, images_per_group: int, image_size: int, segments: int,
                pad_id: int = 0) -> dict[str, np.ndarray]:
  """A batch of `batch_spec`'s layout that is all padding (input_ids `pad_id`, ids -1, the rest 0)."""
  fill = {**_FILL, "input_ids": pad_id}
  return {k: np.full(shape, fill.get(k, 0), dtype)
          for k, (shape, dtype) in batch_spec(rows, seq_len, groups, images_per_group, image_size, segments).items()}


def row_images(batch: dict[str, np.ndarray], row: int, num_image_tokens: int) -> np.ndarray:
  """float32[k, S, S, 3]: the images row `row` reads, in token order (what its image tokens splice)."""
  groups, per_group = batch["images"].shape[:2]
  group = row // (batch["image_index"].shape[0] // groups)
  index = batch["image_index"][row]
  slots = index[index >= 0][::num_image_tokens] // num_image_tokens
  return batch["images"][group, slots]



def put_images(batch: dict[str, np.ndarray], per_row, image_token_id: int) -> dict[str, np.ndarray]:
  """Fills `images` and `image_index` of a batch whose `input_ids` are set: `per_row[r]` (float32[k, S,
  S, 3], k >= 0) are row r's images in token order, placed in its group's next slots (for synthetic
  and test batches; the pipeline's `assemble` does the same while packing). ValueError if a group's
  images overflow its budget or a row's image tokens do not split evenly over its images."""
  groups, per_group = batch["images"].shape[:2]
  rows_per_group = batch["input_ids"].shape[0] // groups
  used = [0] * groups
  for r, images in enumerate(per_row):
    g, k = r // rows_per_group, len(images)
    is_image = batch["input_ids"][r] == image_token_id
    if k == 0:
      continue
    n = int(is_image.sum())
    if n % k or used[g] + k > per_group:
      raise ValueError(f"row {r}: {k} images for {n} image tokens, group {g} has {per_group - used[g]} slots left")
    batch["images"][g, used[g]:used[g] + k] = images
    batch["image_index"][r][is_image] = used[g] * (n // k) + np.arange(n)
    used[g] += k
  return batch
