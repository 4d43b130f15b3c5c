"""Image files -> the arrays `inference.generate` / `score` take, preprocessed as the model saw them.

The steps are transformers' CLIPImageProcessor for LLaVA (`data_pipeline.images.clip_preprocess`)
with the model's normalisation (`LCBMConfig.image_mean` / `image_std`), so an exported model gives
the same answer in both frameworks. `lcbm predict` / `lcbm score` read their `--image` files here.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipeline import images
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets


def preprocess_image(image: Image.Image, size: int, mean: Sequence[float] = presets.CLIP_MEAN,
                     std: Sequence[float] = presets.CLIP_STD) -> np.ndarray:
  """PIL image -> float32[size, size, 3]: the training pipeline's CLIP preprocessing (OpenAI CLIP's
  normalisation unless the model's is given)."""
  return images.clip_preprocess(image, size, mean, std)


def load_images(paths: Sequence[str], size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray | None:
  """Image files -> float32[1, M, size, size, 3] (None when there are none)."""
  out = []
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f"image {path} does not exist; pass an existing file to --image")
    try:
      with Image.open(path) as img:
        img.load()
        out.append(preprocess_image(img, size, mean, std))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise UserError(f"cannot read image {path} ({type(e).__name__}: {e}); pass a JPEG/PNG/GIF file") from None
  return np.stack(out)[None] if out else None
