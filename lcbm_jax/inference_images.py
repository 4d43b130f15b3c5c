"""The model's image preprocessing: `LCBMConfig` <-> `data_pipeline.images.ImageProcessing`, and image
files -> the arrays `inference.generate` / `score` take, preprocessed as the model saw them in training.

The model config holds the preprocessing (normalisation, shortest edge, resize filter, LLaVA-1.5's pad
to square; the crop is the vision input) and `image_processing(cfg)` turns it into the pipeline's
description, so training, `lcbm predict` / `lcbm score` (their `--image` files are read here) and the
exported preprocessor give the same pixels. The import side reads a directory's preprocessor into
config fields:

  cfg = dataclasses.replace(cfg, **fields_from_dir(hf_dir, cfg.vision.image_size))
  x = load_model_images(paths, cfg)          # float32[1, M, S, S, 3]
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipeline import images
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets


def image_processing(cfg: presets.LCBMConfig) -> images.ImageProcessing:
  """The preprocessing `cfg`'s model was trained with (crop = vision.image_size)."""
  return images.ImageProcessing(crop_size=cfg.vision.image_size, mean=cfg.image_mean, std=cfg.image_std,
                                shortest_edge=cfg.image_shortest_edge, resample=cfg.image_resample,
                                pad_to_square=cfg.image_pad_to_square)


def fields_from_preprocessor(preprocessor: Mapping[str, Any], image_size: int) -> dict[str, Any]:
  """A preprocessor_config.json (or processor_config.json) dict -> the LCBMConfig image fields giving
  transformers' pixels, for a vision tower of input side `image_size`. UserError names a setting that
  cannot be reproduced, or a crop that is not the vision input."""
  p = images.processing_from_hf(preprocessor)
  if p.crop_size != image_size:
    raise UserError(f"image preprocessor crops {p.crop_size} px but the vision tower takes image_size "
                    f"{image_size}; fix crop_size in the preprocessor config")
  return {"image_mean": p.mean, "image_std": p.std,
          # 0 keeps the default spelling (shortest edge = crop) that an image_size override follows.
          "image_shortest_edge": 0 if p.shortest_edge == image_size else p.shortest_edge,
          "image_resample": p.resample, "image_pad_to_square": p.pad_to_square}


def fields_from_dir(hf_dir: str, image_size: int) -> dict[str, Any]:
  """The image fields of a Hugging Face directory, read as transformers 5 reads them: the
  "image_processor" entry of processor_config.json, else preprocessor_config.json; {} (keep the
  defaults) when it has neither."""
  for name in ("processor_config.json", "preprocessor_config.json"):
    path = os.path.join(hf_dir, name)
    if not os.path.isfile(path):
      continue
    try:
      with open(path) as f:
        d = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f"cannot read {path} ({e}); fix or remove the file") from None
    if name == "preprocessor_config.json" or "image_processor" in d:
      try:
        return fields_from_preprocessor(d, image_size)
      except UserError as e:
        raise UserError(f"{path}: {e}") from None
  return {}


def preprocess_image(image: Image.Image, size: int, mean: Sequence[float] = presets.CLIP_MEAN,
                     std: Sequence[float] = presets.CLIP_STD) -> np.ndarray:
  """PIL image -> float32[size, size, 3] with the default preprocessing (shortest edge = crop = size,
  bicubic, no pad; OpenAI CLIP's normalisation unless given)."""
  return images.preprocess(image, images.ImageProcessing(crop_size=size, mean=tuple(mean), std=tuple(std)))


def _load(paths: Sequence[str], processing: images.ImageProcessing) -> np.ndarray | None:
  out = []
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f"image {path} does not exist; pass an existing file to --image")
    try:
      with Image.open(path) as img:
        img.load()
        out.append(images.preprocess(img, processing))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise UserError(f"cannot read image {path} ({type(e).__name__}: {e}); pass a JPEG/PNG/GIF file") from None
  return np.stack(out)[None] if out else None


def load_model_images(paths: Sequence[str], cfg: presets.LCBMConfig) -> np.ndarray | None:
  """Image files -> float32[1, M, S, S, 3] preprocessed as `cfg`'s model expects (None when there are none)."""
  return _load(paths, image_processing(cfg))
