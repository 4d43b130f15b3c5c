"""The batch layout (docs/contracts.md §5): the one place that names its keys, dtypes and shapes.

The pipeline fills `empty_batch` (`pipeline.assemble`), the trainer compiles against `batch_spec`
(`lcbm_jax.training.train.batch_spec`), and the benchmark and the tests build synthetic batches
from `empty_batch`, so a new key or dtype changes here only.

  spec = batch_spec(rows=8, seq_len=512, max_images=4, image_size=224, segments=16)
  spec["images"]                     # ((8, 4, 224, 224, 3), dtype('float32'))
  batch = empty_batch(8, 512, 4, 224, 16, pad_id=3)   # all padding: nothing attends, no loss
"""
from __future__ import annotations

import numpy as np

# Bookkeeping keys that stay on the host (int64 needs jax x64 on a device); the step reads the rest.
HOST_KEYS = ("sample_ids",)
STEP_KEYS = ("input_ids", "images", "segment_ids", "positions", "targets", "loss_mask", "task_ids")

# Padding values other than 0: no task (-1) and no sample (-1); input_ids pad with the tokenizer's pad id.
_FILL = {"task_ids": -1, "sample_ids": -1}


def batch_spec(rows: int, seq_len: int, max_images: int, image_size: int,
               segments: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """key -> (shape, dtype) of a batch of `rows` rows of `seq_len` tokens.

  input_ids, segment_ids (1, 2, ... per packed sample, 0 = padding), positions, targets, task_ids:
  int32[rows, seq_len]; loss_mask: float32[rows, seq_len]; images: float32[rows, max_images,
  image_size, image_size, 3]; sample_ids: int64[rows, segments].
  """
  tokens = (rows, seq_len)
  i32, f32 = np.dtype(np.int32), np.dtype(np.float32)
  return {
      "input_ids": (tokens, i32),
      "images": ((rows, max_images, image_size, image_size, 3), f32),
      "segment_ids": (tokens, i32),
      "positions": (tokens, i32),
      "targets": (tokens, i32),
      "loss_mask": (tokens, f32),
      "task_ids": (tokens, i32),
      "sample_ids": ((rows, segments), np.dtype(np.int64)),
  }


def empty_batch(rows: int, seq_len: int, max_images: int, image_size: int, segments: int,
                pad_id: int = 0) -> dict[str, np.ndarray]:
  """A batch of `batch_spec`'s layout that is all padding (input_ids `pad_id`, ids -1, the rest 0)."""
  fill = {**_FILL, "input_ids": pad_id}
  return {k: np.full(shape, fill.get(k, 0), dtype)
          for k, (shape, dtype) in batch_spec(rows, seq_len, max_images, image_size, segments).items()}
