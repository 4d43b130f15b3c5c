"""The embedded behavior corpus: a deterministic generator writing the public schemas with media.

`lcbm data generate --out DIR --seed S --size small|medium|large` writes

  DIR/cbc/{train,test}.parquet            YouTube videos in the Content Behavior Corpus schema
  DIR/cbc/media/<video_id>.gif            one keyframe per scene (64x64), named by the `media_path` column
  DIR/blift/{train,test}.jsonl            Reddit r/pics posts in the BLIFT schema (+ `score` upvotes)
  DIR/blift/media/<id>.png
  DIR/tweets/{train,test_time,test_brand}.jsonl   brand tweets (time-split and brand-split test sets)
  DIR/tweets/media/<id>.jpg
  DIR/latent.jsonl                        hidden labels per record_id (tone, topic, memorability)
  DIR/manifest.json                       seed, size, version, files and record counts
  DIR/README.md

Content is drawn procedurally: each scene/image shows one object (ball, box, pyramid, star, heart,
kite, ring, cross) in a colour, moving fast, slowly or standing still (speed lines; the object also
moves between video frames), on a background that is bright or dark. Captions and ASR say all of
that. The hidden *tone* (cheerful, gloomy, angry, peaceful) sets the background palette and pattern
(sun rays, rain, zigzags, waves); captions never mention it, but comments do. The hidden *topic*
sets which objects appear and the title vocabulary.

The audience model (`AUDIENCE` constants below) is deliberately strong and simple, so a small model
can learn it in minutes:
- a scene's replay value = 22 + 30*fast + 10*slow + 18*bright + object appeal (0-16)
  + 8 on the first scene - 6 on the last + N(0, 4), clipped to 0-100;
- a tweet's likes = followers * account rate * exp(1.5*hot colour + 1.5*hot object + 0.3*cheerful
  + N(0, 0.3)), hot colours red/yellow/orange, hot objects star/heart (about 19% of tweets have
  both, so an account's top 10% - level "high" - is made of them); so within an account the like
  level is set by the colour and object words of the tweet and caption;
- a video's likes-per-view grows with hot colours and a cheerful tone, its views with followers and
  mean replay; Reddit upvotes follow the tweet rule; comments carry the tone's words.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from data_pipeline import records as rec
from lcbm_jax.errors import UserError

GENERATOR_VERSION = "behavior-world-v2"
IMAGE_SIZE = 64
# Scenes per video, uniform. With 16 image tokens per keyframe, a 7-scene behavior_simulation
# verbalization stays under 512 tokens (the CPU demo's row length); 8 scenes would not. Short videos
# (1-3 scenes, like many ads) matter for learning: in a one-scene video the replay depends on the only
# caption there is, so a model first learns caption -> replay there and then which scene to read in
# longer ones. With 4-7 scenes only, the demo model never started reading the right scene in its
# CPU budget (within-video slope of predicted replay on "fast" ~0 at 500 steps; docs/performance.md).
MIN_SCENES, MAX_SCENES = 1, 7

OBJECTS = ("ball", "box", "pyramid", "star", "heart", "kite", "ring", "cross")
COLOURS = {"red": (220, 30, 30), "blue": (40, 70, 230), "green": (30, 170, 60), "yellow": (245, 215, 20),
           "purple": (140, 40, 185), "orange": (250, 135, 20)}
MOTIONS = ("still", "slow", "fast")
TONES = ("cheerful", "gloomy", "angry", "peaceful")
TOPICS = {"sports": ("ball", "ring"), "food": ("box", "heart"), "travel": ("kite", "pyramid"),
          "music": ("star", "cross")}
BRANDS = ("Acme", "Borealis", "Cobalt", "Dynamo", "Ember", "Fjord", "Gusto", "Halcyon", "Indigo",
          "Juniper", "Kestrel", "Lumen")
HELD_OUT_BRANDS = ("Kestrel", "Lumen")   # tweets of these accounts form the brand-split test set

# The hidden audience model.
HOT_COLOURS = ("red", "yellow", "orange")
HOT_OBJECTS = ("star", "heart")
OBJECT_APPEAL = {"ball": 4, "box": 0, "pyramid": 2, "star": 16, "heart": 12, "kite": 6, "ring": 3, "cross": 8}

# Tone -> background (bright RGB) and comment phrases; the tone word itself is never written.
TONE_BACKGROUND = {"cheerful": (255, 200, 120), "gloomy": (110, 130, 160), "angry": (200, 70, 60),
                   "peaceful": (140, 220, 200)}
TONE_COMMENTS = {
    "cheerful": ("this made my day", "love the {colour} {object}", "so happy watching this", "what a fun picture",
                 "smiling from ear to ear", "best thing I saw today", "wonderful colors"),
    "gloomy": ("this makes me sad", "such a depressing mood", "feels lonely somehow", "I want to cry looking at this",
               "so dull and grey", "the {object} looks lost", "kind of heartbreaking"),
    "angry": ("this is so annoying", "I hate how loud this looks", "makes me furious for some reason",
              "the {object} looks mad", "awful vibes", "terrible energy here", "why does this feel so hostile"),
    "peaceful": ("so relaxing", "very soothing to look at", "the {colour} {object} feels quiet",
                 "nice and restful", "I could look at this all day", "lovely soft colors", "gentle and still"),
}
NEUTRAL_COMMENTS = ("is that a {object}?", "what camera did you use", "first", "posted at the right time",
                    "the {colour} really stands out")
TOPIC_WORDS = {"sports": ("match", "game day", "training", "the final"),
               "food": ("recipe", "kitchen", "taste test", "snack time"),
               "travel": ("journey", "road trip", "the trail", "postcard"),
               "music": ("concert", "new song", "rhythm", "the encore")}
MOTION_CAPTION = {"still": "standing still", "slow": "moving slowly", "fast": "moving fast"}
MOTION_ASR = {"still": "here is the {object}", "slow": "the {object} drifts", "fast": "the {object} zooms past"}
TWEET_OPENERS = ("Meet our", "Say hello to the", "New drop: the", "Today we share this", "Look at this",
                 "Weekend mood: the")

SIZES = {  # records per (source, split)
    "small": {("cbc", "train"): 360, ("cbc", "test"): 60, ("blift", "train"): 300, ("blift", "test"): 60,
              ("tweets", "train"): 700, ("tweets", "test_time"): 120, ("tweets", "test_brand"): 120},
}
SIZES["medium"] = {k: 5 * v for k, v in SIZES["small"].items()}
SIZES["large"] = {k: 25 * v for k, v in SIZES["small"].items()}
START_DATE = np.datetime64("2022-01-01")
DAYS = 1095
TIME_SPLIT_DAY = 930   # tweets after this day form the time-split test set


@dataclasses.dataclass(frozen=True)
class Account:
  handle: str
  brand: str
  followers: int
  like_rate: float     # likes per follower of an ordinary tweet


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  obj: str
  colour: str
  motion: str
  bright: bool


# ---------------------------------------------------------------------------------------------
# Drawing.

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


def _encode(frames: list[Image.Image], fmt: str, durations_ms: list[int] | None = None) -> bytes:
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


# ---------------------------------------------------------------------------------------------
# The audience model.

def scene_replay(spec: SceneSpec, position: int, n: int, rng: np.random.Generator) -> int:
  value = (22 + 30 * (spec.motion == "fast") + 10 * (spec.motion == "slow") + 18 * spec.bright
           + OBJECT_APPEAL[spec.obj] + (8 if position == 0 else 0) - (6 if position == n - 1 else 0)
           + rng.normal(0, 4))
  return int(np.clip(round(value), 0, 100))


def like_score(obj: str, colour: str, tone: str, rng: np.random.Generator, noise: float = 0.3) -> float:
  return (1.5 * (colour in HOT_COLOURS) + 1.5 * (obj in HOT_OBJECTS) + 0.3 * (tone == "cheerful")
          + rng.normal(0, noise))


def memorability(specs: list[SceneSpec], rng: np.random.Generator) -> int:
  distinct = np.mean([(s.obj in ("star", "heart", "cross")) for s in specs])
  fast = np.mean([s.motion == "fast" for s in specs])
  bright = np.mean([s.bright for s in specs])
  return int(np.clip(round(15 + 35 * distinct + 20 * fast + 15 * bright + rng.normal(0, 6)), 0, 99))


def comments_for(tone: str, obj: str, colour: str, n: int, rng: np.random.Generator) -> list[str]:
  """Mostly the tone's phrases, some neutral ones; distinct, at least 3 words (BLIFT's filter)."""
  pool = [p.format(object=obj, colour=colour) for p in TONE_COMMENTS[tone]]
  neutral = [p.format(object=obj, colour=colour) for p in NEUTRAL_COMMENTS]
  picked = [pool[int(i)] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
  if rng.uniform() < 0.5:
    picked[-1] = neutral[int(rng.integers(len(neutral)))]
  return [c for c in dict.fromkeys(picked) if len(c.split()) >= 3] or [pool[0]]


# ---------------------------------------------------------------------------------------------
# Items.

def _pick_object(topic: str, rng: np.random.Generator) -> str:
  if rng.uniform() < 0.75:
    return TOPICS[topic][int(rng.integers(2))]
  return OBJECTS[int(rng.integers(len(OBJECTS)))]


def _pick_colour(rng: np.random.Generator) -> str:
  return list(COLOURS)[int(rng.integers(len(COLOURS)))]


def _caption(spec: SceneSpec, with_motion: bool = True) -> str:
  """E.g. "a red star moving fast, bright" (short: a video verbalization must fit a 512-token row)."""
  motion = f" {MOTION_CAPTION[spec.motion]}" if with_motion else ""
  return f"{_article(spec.colour)} {spec.colour} {spec.obj}{motion}, {'bright' if spec.bright else 'dark'}"


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _date(day: int) -> str:
  return str(START_DATE + np.timedelta64(int(day), "D"))


def make_accounts(rng: np.random.Generator) -> list[Account]:
  out = []
  for b in BRANDS:
    followers = int(round(float(np.exp(rng.uniform(np.log(5e3), np.log(2e6)))), -2))
    out.append(Account(handle=b.lower() + "_official", brand=b, followers=followers,
                       like_rate=float(rng.uniform(0.002, 0.01))))
  return out


def make_video(i: int, acc: Account, rng: np.random.Generator):
  """A CBC row (dict), its GIF bytes and latent labels."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  n = int(rng.integers(MIN_SCENES, MAX_SCENES + 1))
  specs = [SceneSpec(_pick_object(topic, rng), _pick_colour(rng), MOTIONS[int(rng.integers(3))],
                     bool(rng.uniform() < 0.5)) for _ in range(n)]
  replay = [scene_replay(s, k, n, rng) for k, s in enumerate(specs)]
  frames = [draw_scene(s, tone, k, rng) for k, s in enumerate(specs)]
  durations = [float(rng.choice((1.0, 1.5, 2.0))) for _ in range(n)]
  starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
  markers = []
  for s, d, v in zip(starts, durations, replay):
    if d == 1.0:   # four quarter-second markers that the reader merges back (max = the scene's value)
      vals = [v, max(0, v - 3), max(0, v - 7), max(0, v - 2)]
      order = rng.permutation(4)
      markers += [{"start": s + 0.25 * q, "end": s + 0.25 * (q + 1), "replay_score": vals[int(order[q])] / 100}
                  for q in range(4)]
    else:
      markers.append({"start": s, "end": s + d, "replay_score": v / 100})
  hot = np.mean([s.colour in HOT_COLOURS for s in specs])
  lpv = float(np.clip(1.0 + 3.0 * hot + 1.0 * (tone == "cheerful") + rng.normal(0, 0.25), 0.2, 9.0))
  views = float(round(acc.followers * float(np.exp(rng.normal(-0.5, 0.3))) * (np.mean(replay) / 40)))
  likes = float(round(views * lpv / 100))
  asr = [MOTION_ASR[s.motion].format(object=s.obj) for s in specs]
  asr[0] = f"welcome to {acc.brand}, " + asr[0]
  ocr = [[acc.brand.upper()] if k == 0 else [] for k in range(n)]
  vid = f"bw{i:06d}"
  words = TOPIC_WORDS[topic]
  row = {
      "video_id": vid,
      "asr_raw": [{"start": float(s), "end": float(s + d), "text": t,
                   "words": [{"confidence": 0.95, "start": float(s), "end": float(s + d), "text": w}
                             for w in t.split()]} for s, d, t in zip(starts, durations, asr)],
      "asr_grouped": [[t] for t in asr],
      "ocr": ocr,
      "blip2_annotations": {"actions": [MOTION_CAPTION[s.motion] for s in specs],
                            "captions": [_caption(s) for s in specs],
                            "objects": [s.obj for s in specs]},
      "replay_graphs": {"original_marker_duration": float(sum(durations)) / max(1, len(markers)),
                        "processed_marker_duration": 1.0, "multiplier": 1.0, "markers": markers},
      "likes": likes, "views": views,
      "metadata": {"title": f"{acc.brand}: {words[int(rng.integers(4))]} with the {specs[0].colour} {specs[0].obj}",
                   "description": "", "length": float(sum(durations)),
                   "date": _date(int(rng.integers(DAYS)))},
      "channel_data": {"channel_id": f"UC{acc.brand.lower()}", "company_name": acc.brand, "subscribers": float(acc.followers)},
      "media_path": f"media/{vid}.gif",
  }
  gif = _encode(frames, "GIF", [int(d * 1000) for d in durations])
  latent = {"tone": tone, "topic": topic, "memorability": memorability(specs, rng)}
  return row, gif, latent


def make_post(i: int, rng: np.random.Generator):
  """A BLIFT Reddit row, its PNG bytes and latent labels."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  spec = SceneSpec(_pick_object(topic, rng), _pick_colour(rng), MOTIONS[int(rng.integers(3))],
                   bool(rng.uniform() < 0.5))
  png = _encode([draw_scene(spec, tone, int(rng.integers(5)), rng)], "PNG")
  score = float(round(np.exp(4.0 + 1.2 * like_score(spec.obj, spec.colour, tone, rng, noise=0.4)
                             + 0.6 * (tone in ("cheerful", "peaceful")))))
  comments = comments_for(tone, spec.obj, spec.colour, int(rng.integers(3, 7)), rng)
  pid = f"p{i:06d}"
  words = TOPIC_WORDS[topic]
  row = {"id": pid, "url": f"media/{pid}.png", "permalink": f"/r/pics/comments/{pid}/",
         "title": f"My {spec.colour} {spec.obj}, {words[int(rng.integers(4))]} edition",
         "subreddit": "pics", "comments": comments, "num_comments": len(comments), "score": score,
         "caption": _caption(spec), "created_utc": _date(int(rng.integers(DAYS)))}
  return row, png, {"tone": tone, "topic": topic, "memorability": memorability([spec], rng)}


def make_tweet(i: int, acc: Account, day: int, rng: np.random.Generator):
  """A tweet row, its JPEG bytes and latent labels."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  spec = SceneSpec(_pick_object(topic, rng), _pick_colour(rng), "still", bool(rng.uniform() < 0.5))
  jpg = _encode([draw_scene(spec, tone, int(rng.integers(5)), rng)], "JPEG")
  likes = float(round(acc.followers * acc.like_rate * float(np.exp(like_score(spec.obj, spec.colour, tone, rng)))))
  words = TOPIC_WORDS[topic]
  opener = TWEET_OPENERS[int(rng.integers(len(TWEET_OPENERS)))]
  tid = f"t{i:06d}"
  row = {"id": tid, "account": acc.handle, "brand": acc.brand, "followers": acc.followers, "date": _date(day),
         "text": f"{opener} {spec.colour} {spec.obj}! {words[int(rng.integers(4))].capitalize()} with {acc.brand}.",
         "media": [f"media/{tid}.jpg"], "media_caption": _caption(spec, with_motion=False),
         "media_keywords": [spec.colour, spec.obj], "likes": likes}
  return row, jpg, {"tone": tone, "topic": topic, "memorability": memorability([spec], rng)}


# ---------------------------------------------------------------------------------------------
# Writing the corpus.

def _cbc_schema():
  import pyarrow as pa
  f64, s = pa.float64(), pa.string()
  return pa.schema([
      ("video_id", s),
      ("asr_raw", pa.list_(pa.struct([("start", f64), ("end", f64), ("text", s), ("words", pa.list_(
          pa.struct([("confidence", f64), ("start", f64), ("end", f64), ("text", s)])))]))),
      ("asr_grouped", pa.list_(pa.list_(s))),
      ("ocr", pa.list_(pa.list_(s))),
      ("blip2_annotations", pa.struct([("actions", pa.list_(s)), ("captions", pa.list_(s)),
                                       ("objects", pa.list_(s))])),
      ("replay_graphs", pa.struct([("original_marker_duration", f64), ("processed_marker_duration", f64),
                                   ("multiplier", f64), ("markers", pa.list_(pa.struct(
                                       [("start", f64), ("end", f64), ("replay_score", f64)])))])),
      ("likes", f64), ("views", f64),
      ("metadata", pa.struct([("title", s), ("description", s), ("length", f64), ("date", s)])),
      ("channel_data", pa.struct([("channel_id", s), ("company_name", s), ("subscribers", f64)])),
      ("media_path", s),
  ])


def write_cbc_parquet(rows: list[dict[str, Any]], path: str) -> None:
  """Writes CBC rows with the public schema (plus the optional `media_path` column)."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  pq.write_table(pa.Table.from_pylist(rows, schema=_cbc_schema()), path)


def _write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")


def _write_bytes(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)


def generate(out: str, seed: int = 0, size: str = "small", progress: bool = True,
             counts: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
  """Writes the corpus under `out`; returns the manifest. Same seed and size -> same bytes.
  `counts` overrides the records per (source, split) of `size` (tests use a few records)."""
  if size not in SIZES:
    raise UserError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
  counts = {**SIZES[size], **(counts or {})}
  for sub in ("cbc/media", "blift/media", "tweets/media"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
  root = np.random.SeedSequence([seed, 20240917])
  # One independent stream per (source); items draw from their source's stream in order.
  s_acc, s_cbc, s_blift, s_tw = (np.random.default_rng(s) for s in root.spawn(4))
  accounts = make_accounts(s_acc)
  latent_rows: list[dict[str, Any]] = []
  files: list[dict[str, Any]] = []
  total = sum(counts.values())
  bar = tqdm(total=total, desc="generate", file=sys.stderr, disable=not progress)

  idx = 0
  for split in ("train", "test"):
    rows = []
    for _ in range(counts[("cbc", split)]):
      acc = accounts[int(s_cbc.integers(len(accounts)))]
      row, gif, latent = make_video(idx, acc, s_cbc)
      _write_bytes(os.path.join(out, "cbc", row["media_path"]), gif)
      rows.append(row)
      latent_rows.append({"record_id": row["video_id"], "source": "cbc", "split": split, **latent})
      idx += 1
      bar.update()
    write_cbc_parquet(rows, os.path.join(out, "cbc", f"{split}.parquet"))
    files.append({"source": "cbc", "split": split, "path": f"cbc/{split}.parquet", "count": len(rows)})

  idx = 0
  for split in ("train", "test"):
    rows = []
    for _ in range(counts[("blift", split)]):
      row, png, latent = make_post(idx, s_blift)
      _write_bytes(os.path.join(out, "blift", row["url"]), png)
      rows.append(row)
      latent_rows.append({"record_id": row["id"], "source": "blift", "split": split, **latent})
      idx += 1
      bar.update()
    _write_jsonl(rows, os.path.join(out, "blift", f"{split}.jsonl"))
    files.append({"source": "blift", "split": split, "path": f"blift/{split}.jsonl", "count": len(rows)})

  seen = [a for a in accounts if a.brand not in HELD_OUT_BRANDS]
  held = [a for a in accounts if a.brand in HELD_OUT_BRANDS]
  plan = ([("train", a, int(s_tw.integers(TIME_SPLIT_DAY))) for a in
           (seen[int(s_tw.integers(len(seen)))] for _ in range(counts[("tweets", "train")]))]
          + [("test_time", a, int(s_tw.integers(TIME_SPLIT_DAY, DAYS))) for a in
             (seen[int(s_tw.integers(len(seen)))] for _ in range(counts[("tweets", "test_time")]))]
          + [("test_brand", a, int(s_tw.integers(DAYS))) for a in
             (held[int(s_tw.integers(len(held)))] for _ in range(counts[("tweets", "test_brand")]))])
  by_split: dict[str, list[dict[str, Any]]] = {"train": [], "test_time": [], "test_brand": []}
  for i, (split, acc, day) in enumerate(plan):
    row, jpg, latent = make_tweet(i, acc, day, s_tw)
    _write_bytes(os.path.join(out, "tweets", row["media"][0]), jpg)
    by_split[split].append(row)
    latent_rows.append({"record_id": row["id"], "source": "tweets", "split": split, **latent})
    bar.update()
  bar.close()
  for split, rows in by_split.items():
    rows.sort(key=lambda r: (r["date"], r["id"]))
    _write_jsonl(rows, os.path.join(out, "tweets", f"{split}.jsonl"))
    files.append({"source": "tweets", "split": split, "path": f"tweets/{split}.jsonl", "count": len(rows)})

  _write_jsonl(latent_rows, os.path.join(out, "latent.jsonl"))
  manifest = {"generator": GENERATOR_VERSION, "seed": seed, "image_size": IMAGE_SIZE,
              "size": size if counts == SIZES[size] else "custom",
              "files": files, "latent": "latent.jsonl", "total_records": total,
              "latent_labels": {"tone": list(TONES), "topic": list(TOPICS), "memorability": "integer 0-99"}}
  with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(_README.format(seed=seed, size=size, total=total,
                           table="\n".join(f"| {e['path']} | {e['source']} | {e['split']} | {e['count']} |"
                                           for e in files)))
  return manifest


_README = """# Embedded behavior corpus (generated; seed {seed}, size {size}, {total} records)

Written by `lcbm data generate` from a hidden audience model; see the README's data section.

| file | source reader | split | records |
|---|---|---|---|
{table}

Media lie under each source's `media/` folder. `latent.jsonl` holds hidden evaluation labels
(tone, topic, memorability) keyed by record_id: never train on them.
"""


# ---------------------------------------------------------------------------------------------
# Reading a generated corpus back (through the public-schema readers).

def load_manifest(corpus_dir: str) -> dict[str, Any]:
  path = os.path.join(corpus_dir, "manifest.json")
  if not os.path.exists(path):
    raise UserError(f"{corpus_dir} has no manifest.json; generate one with `lcbm data generate --out {corpus_dir}`")
  with open(path) as f:
    return json.load(f)


def load_latent(corpus_dir: str) -> dict[str, dict[str, Any]]:
  """record_id -> hidden labels (tone, topic, memorability, source, split)."""
  out = {}
  with open(os.path.join(corpus_dir, load_manifest(corpus_dir)["latent"]), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      out[row.pop("record_id")] = row
  return out


def read(path: str, media_root: str | None = None, *, split: str | None = None, source: str | None = None,
         with_latent: bool = False) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Every record of a generated corpus through the public-schema readers (optionally one split/source).
  `with_latent=True` attaches the hidden labels as `record.latent` (evaluation only)."""
  from data_pipeline import sources
  manifest = load_manifest(path)
  latent = load_latent(path) if with_latent else {}
  for entry in manifest["files"]:
    if (split is not None and entry["split"] != split) or (source is not None and entry["source"] != source):
      continue
    file = os.path.join(path, entry["path"])
    root = media_root or os.path.dirname(file)
    for r in sources.read(entry["source"], file, root):
      if with_latent and isinstance(r, rec.ContentBehaviorRecord) and r.record_id in latent:
        r = dataclasses.replace(r, latent=latent[r.record_id])
      yield r


def cli_generate(args) -> int:
  manifest = generate(args.out, seed=args.seed, size=args.size)
  for e in manifest["files"]:
    print(f"{e['path']:28s} {e['count']:7d} records")
  print(f"wrote {manifest['total_records']} records to {args.out} (seed {args.seed}, size {args.size})")
  return 0
