"""The model's image preprocessing, shared by training (the Grain pipeline), inference (`lcbm predict`)
and the Hugging Face import and export: one description (`ImageProcessing`) and one implementation.

  p = processing_from_hf(json.load(open("preprocessor_config.json")))   # or processor_config.json
  x = preprocess(pil_image, p)            # float32[p.crop_size, p.crop_size, 3]
  processing_to_hf(p)                     # the preprocessor_config.json entries that give the same pixels

Two processors cover what LLaVA directories use: `CLIPImageProcessor` (shortest-edge resize, centre
crop) and `LlavaImageProcessor` with `do_pad=True` (first padded to a square with the mean colour, as
LLaVA-1.5's `expand2square`). Each step and its rounding are those of transformers 5's PIL backend
(`CLIPImageProcessorPil`, `LlavaImageProcessorPil`), so pixels match to 1e-6.

Why PIL and not torchvision: with torchvision installed, transformers 5 picks the torchvision backend
by default (`CLIPImageProcessor` / `LlavaImageProcessor` are then the torchvision classes). Its
resize rounds differently from Pillow's: by 1-2 levels (up to 0.03 after normalisation) on ~0.5% of
the pixels for bicubic, ~7% for bilinear (torch 2.14, torchvision 0.29), so no one implementation
matches both to 1e-6. Without torchvision (this project's environment: it depends on torch and
transformers only) `AutoProcessor` loads the PIL backend, and LLaVA-1.5 was trained on Pillow-resized
images. To get exactly these pixels from transformers where torchvision is installed, pass
`backend="pil"` to `AutoProcessor` / `LlavaProcessor` / `AutoImageProcessor.from_pretrained`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from lcbm_jax.errors import UserError

# PIL filters by the number transformers stores as `resample`.
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

# transformers' defaults for a key a preprocessor config leaves out (CLIPImageProcessor's class
# attributes: OpenAI CLIP normalisation, 224 px, bicubic).
_HF_MEAN = (0.48145466, 0.4578275, 0.40821073)
_HF_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_SIDE = 224

_TYPES = ("CLIPImageProcessor", "LlavaImageProcessor")
# Keys that name the processor or only shape the returned container, never the pixels of one image.
# (`pad_size` is read only by the batch padding that LlavaImageProcessor's do_pad replaces.)
_INERT_KEYS = frozenset({
    "image_processor_type", "feature_extractor_type", "processor_class", "_processor_class", "auto_map",
    "transformers_version", "data_format", "input_data_format", "return_tensors", "device",
    "disable_grouping", "pad_size"})
_READ_KEYS = frozenset({
    "size", "crop_size", "do_center_crop", "resample", "image_mean", "image_std", "do_pad", "rescale_factor",
    "do_resize", "do_rescale", "do_normalize", "do_convert_rgb", "default_to_square", "use_square_size"})


@dataclasses.dataclass(frozen=True)
class ImageProcessing:
  """How a PIL image becomes the model's float32[crop_size, crop_size, 3] (transformers' key in brackets).

  crop_size: side of the centre crop = the vision tower's input [crop_size]. mean / std: the RGB
  normalisation [image_mean / image_std]. shortest_edge: the short side after the resize, 0 = crop_size
  [size.shortest_edge]. resample: PIL filter of the resize, a key of RESAMPLE [resample]. pad_to_square:
  pad to a square of the long side with the mean colour before resizing [LlavaImageProcessor do_pad].
  """
  crop_size: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  shortest_edge: int = 0
  resample: int = 3
  pad_to_square: bool = False

  def __post_init__(self):
    if not (_is_int(self.crop_size) and self.crop_size >= 1):
      raise UserError(f"image crop_size must be an int >= 1, got {self.crop_size!r}")
    if not (_is_int(self.shortest_edge) and self.shortest_edge >= 0):
      raise UserError(f"image shortest_edge must be an int >= 0 (0 = crop_size), got {self.shortest_edge!r}")
    if self.shortest_edge == 0:
      object.__setattr__(self, "shortest_edge", self.crop_size)
    if self.crop_size > self.shortest_edge:
      # transformers would zero-pad the crop (and its two backends pad differently).
      raise UserError(f"image crop_size {self.crop_size} is larger than the resized shortest edge "
                      f"{self.shortest_edge}; not supported (use a shortest edge >= the crop)")
    if not _is_int(self.resample) or self.resample not in RESAMPLE:
      raise UserError(f"image resample {self.resample!r} is not a PIL filter; use one of "
                      + ", ".join(f"{k} ({v})" for k, v in RESAMPLE.items()))
    object.__setattr__(self, "resample", int(self.resample))   # PIL's IntEnum -> a JSON-able int
    if not isinstance(self.pad_to_square, bool):
      raise UserError(f"image pad_to_square must be a bool, got {self.pad_to_square!r}")
    for name in ("mean", "std"):
      v = getattr(self, name)
      if v is None or len(v) != 3 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
        raise UserError(f"image {name} {v!r} needs 3 finite numbers (RGB)")
      object.__setattr__(self, name, tuple(float(x) for x in v))
    if min(self.std) <= 0:
      raise UserError(f"image std {self.std} must be > 0")


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def preprocess(image: Image.Image, p: ImageProcessing) -> np.ndarray:
  """PIL image -> float32[p.crop_size, p.crop_size, 3], as transformers' PIL image processor does it.

  RGB (alpha composited over white); if `p.pad_to_square`, pasted centred (offsets rounded down) on a
  square of the long side filled with int(mean * 255); resize of the short side to `p.shortest_edge`
  (the long side truncated to int) with filter `p.resample`; centre crop (offsets rounded down);
  x / 255 in float64 then float32; (x - mean) / std in float32.
  """
  if "A" in image.getbands() or image.info.get("transparency") is not None:
    image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
  image = image.convert("RGB")
  w, h = image.size
  if p.pad_to_square and w != h:
    side = max(w, h)
    square = Image.new("RGB", (side, side), tuple(int(x * 255) for x in p.mean))
    square.paste(image, ((side - w) // 2, (side - h) // 2))
    image, w, h = square, side, side
  s = p.shortest_edge
  new_long = int(s * max(w, h) / min(w, h))
  new_w, new_h = (s, new_long) if w <= h else (new_long, s)
  x = np.asarray(image.resize((new_w, new_h), resample=p.resample))
  c = p.crop_size
  top, left = (new_h - c) // 2, (new_w - c) // 2
  x = x[top:top + c, left:left + c]
  x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
  return (x - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)


# ---------------------------------------------------------------- Hugging Face preprocessor configs


def _unsupported(setting: str, why: str) -> UserError:
  return UserError(f"image preprocessor setting {setting} is not supported: {why}")


def _side(value: Any, key: str) -> int:
  """A `size` / `crop_size` entry -> one side (an int is the legacy spelling of both)."""
  if _is_int(value):
    return value
  if not isinstance(value, Mapping):
    raise _unsupported(f"{key}={value!r}", "expected an int or a dict")
  given = {k: v for k, v in value.items() if v is not None}
  if key == "size":
    if set(given) != {"shortest_edge"}:
      raise _unsupported(f"size={dict(value)}", "lcbm reproduces a resize of the shortest edge only "
                         "(size={'shortest_edge': N}), keeping the aspect ratio")
    return given["shortest_edge"]
  if set(given) != {"height", "width"} or given["height"] != given["width"]:
    raise _unsupported(f"crop_size={dict(value)}", "the crop must be a square {'height': N, 'width': N}")
  return given["height"]


def _rgb(value: Any, key: str) -> tuple[float, float, float]:
  if isinstance(value, (int, float)):   # transformers repeats a single number over the channels
    return (float(value),) * 3
  if not isinstance(value, Sequence) or len(value) != 3:
    raise _unsupported(f"{key}={value!r}", "expected 3 numbers (RGB)")
  return tuple(float(x) for x in value)


def processing_from_hf(preprocessor: Mapping[str, Any]) -> ImageProcessing:
  """A preprocessor_config.json dict (or a processor_config.json with its nested "image_processor")
  -> ImageProcessing giving transformers' pixels; UserError naming the first setting it cannot reproduce.

  Keys left out take transformers' defaults (224 px, bicubic, OpenAI CLIP normalisation).
  """
  d = preprocessor.get("image_processor", preprocessor)
  if not isinstance(d, Mapping):
    raise UserError(f"image_processor entry {d!r} is not a dict of image processor settings")
  kind = d.get("image_processor_type")
  if kind is None and d.get("feature_extractor_type"):   # transformers 4's older spelling
    kind = d["feature_extractor_type"].replace("FeatureExtractor", "ImageProcessor")
  base = kind
  for suffix in ("Fast", "Pil"):   # the same processor on another backend
    if base and base.endswith(suffix):
      base = base[:-len(suffix)]
  if base is not None and base not in _TYPES:
    raise _unsupported(f"image_processor_type={kind!r}", f"lcbm reproduces {' and '.join(_TYPES)}")
  unknown = sorted(set(d) - _READ_KEYS - _INERT_KEYS - {"image_processor"})
  if unknown:
    raise _unsupported(f"{unknown[0]}={d[unknown[0]]!r}", "lcbm does not know what it does to the pixels")
  for flag in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
    if d.get(flag, True) is not True:
      raise _unsupported(f"{flag}={d[flag]!r}", "LLaVA models always resize, rescale, normalise and convert to RGB")
  for flag in ("default_to_square", "use_square_size"):
    if d.get(flag):
      raise _unsupported(f"{flag}={d[flag]!r}", "it resizes to a square, ignoring the aspect ratio")
  pad = d.get("do_pad") or False
  if pad is not False and not (pad is True and base == "LlavaImageProcessor"):
    raise _unsupported(f"do_pad={pad!r}" + (f" on {kind}" if kind else " without image_processor_type"),
                       "padding to a square is LlavaImageProcessor's do_pad=true")
  factor = d.get("rescale_factor", 1 / 255)
  if not (isinstance(factor, (int, float)) and abs(factor - 1 / 255) < 1e-12):
    raise _unsupported(f"rescale_factor={factor!r}", "pixels are always scaled by 1/255")
  shortest = _side(d.get("size", _HF_SIDE), "size")
  crop = _side(d.get("crop_size", _HF_SIDE), "crop_size")
  if d.get("do_center_crop", True) is not True:
    if not pad:
      raise _unsupported(f"do_center_crop={d['do_center_crop']!r}", "without do_pad the images would not "
                         "be square")
    crop = shortest   # a padded square resized to the shortest edge is already that square
  return ImageProcessing(crop_size=crop, mean=_rgb(d.get("image_mean", _HF_MEAN), "image_mean"),
                         std=_rgb(d.get("image_std", _HF_STD), "image_std"), shortest_edge=shortest,
                         resample=d.get("resample", 3), pad_to_square=pad)


def processing_to_hf(p: ImageProcessing) -> dict[str, Any]:
  """The preprocessor_config.json dict (as transformers' save_pretrained spells it) that gives `p`'s
  pixels: a CLIPImageProcessor, or a LlavaImageProcessor with do_pad when `p.pad_to_square`."""
  out = {"crop_size": {"height": p.crop_size, "width": p.crop_size}, "do_center_crop": True,
         "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
         "image_mean": list(p.mean), "image_processor_type": "CLIPImageProcessor", "image_std": list(p.std),
         "resample": p.resample, "rescale_factor": 1 / 255, "size": {"shortest_edge": p.shortest_edge}}
  if p.pad_to_square:
    out.update(image_processor_type="LlavaImageProcessor", do_pad=True)
  return out
