"""CLIP image preprocessing, shared by training (the Grain pipeline) and inference (`lcbm predict`).

One implementation so a model sees the same pixels in training, in `lcbm predict`, and in
transformers after export: the steps and rounding are those of CLIPImageProcessor (PIL backend).
The normalisation values belong to the model (`LCBMConfig.image_mean` / `image_std`, OpenAI CLIP's
by default) and come in as arguments.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image


def clip_preprocess(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """PIL image -> float32[size, size, 3], normalised with the model's `mean` / `std` (RGB).

  RGB (alpha composited over white), bicubic resize of the shortest edge to `size` (the long edge
  truncated to int), centre crop (offsets rounded down), x / 255 in float64 then float32,
  (x - mean) / std in float32 — each step as transformers does it, so pixels match to 1e-6.
  """
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if "A" in image.getbands() or image.info.get("transparency") is not None:
    image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
  image = image.convert("RGB")
  w, h = image.size
  short, long = min(w, h), max(w, h)
  new_long = int(size * long / short)
  new_w, new_h = (size, new_long) if w <= h else (new_long, size)
  x = np.asarray(image.resize((new_w, new_h), resample=Image.BICUBIC))
  top, left = (new_h - size) // 2, (new_w - size) // 2
  x = x[top:top + size, left:left + size]
  x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
  return (x - mean) / std
