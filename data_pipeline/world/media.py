"""Drawing the embedded world's media: one object on a tone's background, encoded as GIF, PNG or JPEG.

Each scene/image shows one object (ball, box, pyramid, star, heart, kite, ring, cross) in a colour,
moving fast, slowly or standing still (speed lines; the object also moves between video frames), on
a background that is bright or dark. The hidden tone sets the background palette and pattern (sun
rays, rain, zigzags, waves). `resized` redraws a file at a real photo's size (`generate(media_size=)`).
"""
from __future__ import annotations

import io
import math
import zlib

import numpy as np
from PIL import Image, ImageDraw

from data_pipeline.world.audience import COLOURS, SceneSpec

IMAGE_SIZE = 64
GRAIN = 6.0   # std of the per-pixel noise `resized` adds (0-255 scale): photo-like entropy for the encoders
# Tone -> background (bright RGB).
TONE_BACKGROUND = {"cheerful": (255, 200, 120), "gloomy": (110, 130, 160), "angry": (200, 70, 60),
                   "peaceful": (140, 220, 200)}


def _shape(draw: ImageDraw.ImageDraw, obj: str, cx: float, cy: float, r: float, fill) -> None:
  box = (cx - r, cy - r, cx + r, cy + r)
  if obj == "ball":
    draw.ellipse(box, fill=fill)
  elif obj == "box":
    draw.rectangle((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill)
  elif obj == "pyramid":
    draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
  elif obj == "star":
    pts = [(cx + (r if i % 2 == 0 else 0.45 * r) * math.sin(i * math.pi / 5),
            cy - (r if i % 2 == 0 else 0.45 * r) * math.cos(i * math.pi / 5)) for i in range(10)]
    draw.polygon(pts, fill=fill)
  elif obj == "heart":
    h = r / 2
    draw.ellipse((cx - r, cy - r + 2, cx, cy), fill=fill)
    draw.ellipse((cx, cy - r + 2, cx + r, cy), fill=fill)
    draw.polygon([(cx - r, cy - h + 2), (cx + r, cy - h + 2), (cx, cy + r)], fill=fill)
  elif obj == "kite":
    draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=fill)
  elif obj == "ring":
    draw.ellipse(box, outline=fill, width=max(3, int(r / 3)))
  elif obj == "cross":
    w = r / 3
    draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
  else:
    raise ValueError(obj)


def _background(tone: str, bright: bool, phase: int) -> Image.Image:
  """The tone's palette and pattern; dark scenes scale the palette down."""
  s = IMAGE_SIZE
  scale = 1.0 if bright else 0.4
  base = tuple(int(c * scale) for c in TONE_BACKGROUND[tone])
  line = tuple(min(255, int(c * 1.25 + 25)) if bright else int(c * 0.55) for c in base)
  img = Image.new("RGB", (s, s), base)
  d = ImageDraw.Draw(img)
  if tone == "cheerful":     # sun rays from the top-left corner
    for k in range(7):
      a = (k + 0.5) * math.pi / 14
      d.line([(0, 0), (s * 1.5 * math.cos(a), s * 1.5 * math.sin(a))], fill=line, width=2)
  elif tone == "gloomy":     # rain
    for k in range(14):
      x, y = (k * 37 + phase * 11) % s, (k * 23 + phase * 7) % s
      d.line([(x, y), (x - 3, y + 8)], fill=line, width=1)
  elif tone == "angry":      # zigzags
    for y0 in range(6, s, 16):
      d.line([(x, y0 + (5 if (x // 6) % 2 else 0)) for x in range(0, s + 6, 6)], fill=line, width=2)
  else:                      # waves
    for y0 in range(8, s, 14):
      d.line([(x, y0 + 3 * math.sin(x / 5 + phase)) for x in range(0, s + 2, 2)], fill=line, width=2)
  return img


def draw_scene(spec: SceneSpec, tone: str, step: int, rng: np.random.Generator) -> Image.Image:
  """One keyframe: background, speed lines for motion, the object. `step` moves the object along."""
  img = _background(tone, spec.bright, step)
  d = ImageDraw.Draw(img)
  r = 11 + rng.uniform(0, 3)
  travel = {"still": 0, "slow": 4, "fast": 10}[spec.motion]
  cx = 18 + (step * (travel + 3) + rng.uniform(0, 4)) % 28
  cy = 30 + rng.uniform(-4, 6)
  fill = COLOURS[spec.colour]
  streak = tuple(min(255, c + 60) for c in fill)
  for k in range({"still": 0, "slow": 1, "fast": 3}[spec.motion]):
    y = cy - 6 + 6 * k if spec.motion == "fast" else cy
    d.line([(cx - r - 16, y), (cx - r - 3, y)], fill=streak, width=2)
  _shape(d, spec.obj, cx, cy, r, fill)
  return img


def encode(frames: list[Image.Image], fmt: str, durations_ms: list[int] | None = None) -> bytes:
  """`frames` as one file of format `fmt` ("GIF": all frames; "JPEG" or "PNG": the first)."""
  buf = io.BytesIO()
  if fmt == "GIF":
    # Frames always differ (the object moves), so Pillow keeps one frame per scene.
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=durations_ms, loop=0,
                   optimize=False)
  elif fmt == "JPEG":
    frames[0].save(buf, "JPEG", quality=90)
  else:
    frames[0].save(buf, "PNG")
  return buf.getvalue()


def resized(data: bytes, size: int) -> bytes:
  """`data` (a file `encode` wrote) at `size` x `size` pixels with film grain, in its own format (a GIF
  keeps its frames and their durations): the same picture at the size and entropy of a real photo or
  keyframe, so reading, decoding and writing it cost what they cost on a real corpus. The grain is
  seeded by the file's own bytes, not the world's streams, so every other byte of a corpus stays put."""
  frames, durations = [], []
  with Image.open(io.BytesIO(data)) as img:
    fmt = img.format
    for k in range(getattr(img, "n_frames", 1)):
      img.seek(k)
      durations.append(int(img.info.get("duration", 0)))
      pixels = np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), np.float32)
      grain = np.random.default_rng([zlib.crc32(data), k]).normal(0.0, GRAIN, pixels.shape)
      frame = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
      # A GIF frame needs a palette; Pillow's default quantizer takes ~10x longer on grain.
      frames.append(frame.quantize(256, method=Image.Quantize.FASTOCTREE) if fmt == "GIF" else frame)
  return encode(frames, fmt, durations if fmt == "GIF" else None)
