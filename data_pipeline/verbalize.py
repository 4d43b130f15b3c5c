"""Versioned templates that write a record's content and behavior as prompt/target text segments.

Each task in `TASKS` has a template version string; the golden tests in tests/test_verbalize.py pin
every template's exact text, so a change of wording must bump the version. `verbalize` returns a
`Verbalized`: segments (only targets carry loss), the media behind each `<image>` in the text (in
order), and a parsed `answer` for evaluation. `content_only=True` gives each task's control-arm
twin: the same media and content with all behavior removed (the target is then content text).

Behavior conventions (PAPERS.md): replay values are integers 0-100 per scene (`Replays: 60`);
views in words ("346 thousand", "2.1 Million"); likes only as a share of views
("Likes-per-View: 2.5%"); Twitter likes as a per-account percentile level (low < 60th,
medium 60-90th, high >= 90th, fitted on the training split with `LikeLevels.fit`); BLIFT replays as
decimals 0-1 after the literal `>>> BEHAVIOR <<<` separator.

Templates never read `record.latent` (generator-only evaluation labels).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from data_pipeline.records import ContentBehaviorRecord, MediaRef

IMAGE = "<image>"
MASK = "[MASK]"
BEHAVIOR_SEPARATOR = ">>> BEHAVIOR <<<"
KBFT_K = (3, 5, 7, 11)
LIKE_PERCENTILES = (60.0, 90.0)
NUM_CHOICES = 25
BLIFT_SYSTEM = ("You are a helpful assistant. Answer as if you can see the media: describe it, "
                "then predict how people respond to it.")


@dataclasses.dataclass(frozen=True)
class Segment:
  text: str
  is_target: bool


@dataclasses.dataclass(frozen=True)
class Verbalized:
  task: str
  template_version: str
  segments: tuple[Segment, ...]
  media: tuple[MediaRef, ...]       # one entry per "<image>" in the text, in order
  frame_indices: tuple[int, ...]    # frame of each media entry (scene keyframe; 0 for still images)
  answer: Any = None                # parsed ground truth (see each task's docstring)

  @property
  def prompt(self) -> str:
    return "".join(s.text for s in self.segments if not s.is_target)

  @property
  def target(self) -> str:
    return "".join(s.text for s in self.segments if s.is_target)

  @property
  def text(self) -> str:
    return "".join(s.text for s in self.segments)


@dataclasses.dataclass(frozen=True)
class LikeLevels:
  """Per-account like percentiles from the training split: `level_key(record)` -> (60th, 90th).

  Keys are "source/account": one brand's tweets and its videos get likes on different scales, so
  their percentiles are kept apart."""
  thresholds: Mapping[str, tuple[float, float]]

  @classmethod
  def fit(cls, records: Iterable[ContentBehaviorRecord]) -> LikeLevels:
    likes: dict[str, list[float]] = {}
    for r in records:
      if r.behavior.likes is not None:
        likes.setdefault(level_key(r), []).append(r.behavior.likes)
    return cls({a: tuple(float(p) for p in np.percentile(v, LIKE_PERCENTILES)) for a, v in likes.items()})

  def extend(self, records: Iterable[ContentBehaviorRecord]) -> LikeLevels:
    """Adds accounts that are not known yet, fitted on `records` (the brand-split test set has
    accounts absent from training: their levels come from their own likes)."""
    new = LikeLevels.fit(r for r in records if level_key(r) not in self.thresholds)
    return LikeLevels({**new.thresholds, **self.thresholds})

  def level(self, record: ContentBehaviorRecord) -> str | None:
    """"low" | "medium" | "high", or None for an unknown account or no likes."""
    t = self.thresholds.get(level_key(record))
    if t is None or record.behavior.likes is None:
      return None
    return like_level(record.behavior.likes, t)


def level_key(record: ContentBehaviorRecord) -> str:
  return f"{record.source}/{record.communicator.account}"


def like_level(likes: float, thresholds: tuple[float, float]) -> str:
  p60, p90 = thresholds
  if likes >= p90:
    return "high"
  return "medium" if likes >= p60 else "low"


@dataclasses.dataclass(frozen=True)
class Context:
  """Corpus-level inputs some templates need, built once from the training split (`Context.fit`)."""
  like_levels: LikeLevels | None = None
  asr_pool: tuple[str, ...] = ()    # distractor ASR texts for the 25-way content simulation

  @classmethod
  def fit(cls, records: Iterable[ContentBehaviorRecord],
          unseen: Iterable[ContentBehaviorRecord] = ()) -> Context:
    """`records`: the training split. `unseen`: other splits; only accounts absent from training
    take their like levels from these (the brand-split test set); nothing else is read from them."""
    records = list(records)
    pool = sorted({_clean(s.asr) for r in records for s in r.content.scenes if s.asr.strip()})
    return cls(like_levels=LikeLevels.fit(records).extend(unseen), asr_pool=tuple(pool))


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str
  version: str
  applies: Callable[[ContentBehaviorRecord, Context | None], bool]   # can this record take this task?
  build: Callable[..., Verbalized]


# ---------------------------------------------------------------------------------------------
# Number words.

def views_in_words(views: float) -> str:
  """346123 -> "346 thousand", 2_140_000 -> "2.1 Million", 950 -> "950"."""
  v = float(views)
  if v >= 1e9:
    return f"{_one_decimal(v / 1e9)} Billion"
  if v >= 1e6 - 5e4:  # 999_950 rounds to "1 Million", not "1000 thousand"
    return f"{_one_decimal(v / 1e6)} Million"
  if v >= 1e3:
    return f"{round(v / 1e3)} thousand"
  return str(int(round(v)))


def compact_count(n: float) -> str:
  """Followers/subscribers: 100000 -> "100k", 2_100_000 -> "2.1M", 950 -> "950"."""
  n = float(n)
  if n >= 1e6 - 5e4:
    return f"{_one_decimal(n / 1e6)}M"
  if n >= 1e3:
    return f"{round(n / 1e3)}k"
  return str(int(round(n)))


def likes_per_view(likes: float, views: float) -> str:
  """"2.5%": likes as a share of views (views 0 -> "0.0%")."""
  return f"{100.0 * likes / views if views else 0.0:.1f}%"


def _one_decimal(x: float) -> str:
  s = f"{x:.1f}"
  return s[:-2] if s.endswith(".0") else s


def _clean(text: str) -> str:
  """One line of record text: no newlines, and no control strings of our own templates."""
  text = text.replace(IMAGE, "<img>").replace(MASK, "[mask]").replace(BEHAVIOR_SEPARATOR, ">> behavior <<")
  return " ".join(text.split())


def _replay_int(v: float) -> int:
  return int(min(100, max(0, math.floor(v + 0.5))))


# ---------------------------------------------------------------------------------------------
# Shared pieces: media selection and the video / post header.

def _visuals(record: ContentBehaviorRecord, max_images: int) -> list[tuple[MediaRef, int, int]]:
  """(media, frame, scene index or -1) per `<image>`: one per scene keyframe of a video
  (evenly spaced scenes when there are more than max_images), else one per still image."""
  media = record.content.media
  videos = [m for m in media if m.kind == "video"]
  if videos and record.content.scenes and not any(m.kind == "image" for m in media):
    n = len(record.content.scenes)
    keep = _evenly_spaced(n, max_images)
    return [(videos[0], i, i) for i in keep]
  # Posts and tweets: every item as a still (a video without scenes shows its first frame).
  return [(m, 0, -1) for m in media][:max_images]


def _evenly_spaced(n: int, k: int) -> list[int]:
  if k <= 0:
    return []
  if n <= k:
    return list(range(n))
  return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [0]


def _video_header(record: ContentBehaviorRecord) -> str:
  c, who = record.content, record.communicator
  parts = [f"Video: {_clean(c.title)}." if c.title.strip() else "Video."]
  if who.brand or who.account:
    channel = _clean(who.brand or who.account)
    if who.followers is not None:
      channel += f" ({compact_count(who.followers)} subscribers)"
    parts.append(f"Channel: {channel}.")
  if record.time:
    parts.append(f"Date: {record.time}.")
  line = " ".join(parts) + "\n"
  if c.description.strip():
    line += f"Description: {_clean(c.description)}\n"
  return line


def _scene_fields(scene, *, replay: str | None, captions: str | None = "", asr: str | None = "") -> str:
  """`{ASR: ..., OCR: ..., Captions: ..., Replays: ...}`; empty text fields are left out.
  `asr`/`captions`: "" = the scene's own text, None = leave out, other = this text (e.g. [MASK])."""
  fields = []
  asr_text = _clean(scene.asr) if asr == "" else asr
  if asr_text:
    fields.append(f"ASR: {asr_text}")
  if scene.ocr.strip():
    fields.append(f"OCR: {_clean(scene.ocr)}")
  cap_text = _captions(scene) if captions == "" else captions
  if cap_text:
    fields.append(f"Captions: {cap_text}")
  if replay is not None:
    fields.append(f"Replays: {replay}")
  return "{" + ", ".join(fields) + "}"


def _captions(scene) -> str:
  return "; ".join(_clean(t) for t in scene.captions if t.strip())


def _scene_lines(record, visuals, field_fn: Callable[[int, Any], str]) -> str:
  """One line per scene: `Scene i: <image> {fields}` (the `<image>` only for selected keyframes)."""
  with_image = {scene for _, _, scene in visuals}
  lines = []
  for i, s in enumerate(record.content.scenes):
    img = f"{IMAGE} " if i in with_image else ""
    lines.append(f"Scene {i + 1}: {img}{field_fn(i, s)}")
  return "\n".join(lines) + "\n"


def _post_media(visuals) -> str:
  """Still images of a post/tweet: one `<image>` per image."""
  return " ".join(IMAGE for _ in visuals)


def _media_description(record) -> str:
  c = record.content
  caps = "; ".join(_captions(s) for s in c.scenes if _captions(s))
  parts = [caps] if caps else []
  if c.keywords:
    parts.append("keywords: " + ", ".join(_clean(k) for k in c.keywords))
  return ", ".join(parts)


def _make(task, version, prompt, target, visuals, answer) -> Verbalized:
  return Verbalized(task=task, template_version=version,
                    segments=(Segment(prompt, False), Segment(target, True)),
                    media=tuple(m for m, _, _ in visuals), frame_indices=tuple(f for _, f, _ in visuals),
                    answer=answer)


def _has_video_replay(r: ContentBehaviorRecord) -> bool:
  return bool(r.content.scenes) and r.behavior.replay is not None and len(r.behavior.replay) == len(r.content.scenes)


# ---------------------------------------------------------------------------------------------
# LCBM behavior simulation: predict every scene's replay value, the views and likes-per-view.

def _behavior_simulation(record, rng, visuals, content_only, ctx, **_):
  """answer: {"replay": (int per scene), "views": float | None, "likes_per_view": float | None (percent)}."""
  b = record.behavior
  head = _video_header(record)
  if content_only:
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=None, captions=MASK))
    prompt = head + body + "Describe the masked captions of every scene.\n"
    target = ", ".join(f"Scene {i + 1}: {{Captions: {_captions(s)}}}" for i, s in enumerate(record.content.scenes))
    return _make("behavior_simulation", VERSIONS["behavior_simulation"], prompt, target, visuals,
                 tuple(_captions(s) for s in record.content.scenes))
  replay = tuple(_replay_int(v) for v in b.replay)
  body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=MASK))
  tail, answers = [], [f"Scene {i + 1}: {{Replay: {v}%}}" for i, v in enumerate(replay)]
  if b.views is not None:
    tail.append(f"Views: {MASK}")
    answers.append(f"Views: {views_in_words(b.views)}")
    if b.likes is not None:
      tail.append(f"Likes-per-View: {MASK}")
      answers.append(f"Likes-per-View: {likes_per_view(b.likes, b.views)}")
  prompt = head + body + (", ".join(tail) + "\n" if tail else "") + "Predict the masked behavior.\n"
  lpv = 100.0 * b.likes / b.views if b.views and b.likes is not None else None
  return _make("behavior_simulation", VERSIONS["behavior_simulation"], prompt, ", ".join(answers), visuals,
               {"replay": replay, "views": b.views, "likes_per_view": lpv})


# ---------------------------------------------------------------------------------------------
# k-BFT: mask k consecutive scenes' replay values (training), or a test regime.

def kbft_window(n: int, rng: np.random.Generator, regime: str = "train", k: int | None = None) -> tuple[int, int]:
  """[start, end) of the masked scenes. train: k in KBFT_K at a random start; past / future: the
  first / last 5-20% of scenes (at least one); random: a window of k (default 5 or 7); all."""
  if regime == "all":
    return 0, n
  if regime in ("past", "future"):
    m = max(1, int(round(n * rng.uniform(0.05, 0.20))))
    return (0, m) if regime == "past" else (n - m, n)
  if regime == "train":
    k = int(rng.choice(KBFT_K)) if k is None else k
  elif regime == "random":
    k = int(rng.choice((5, 7))) if k is None else k
  else:
    raise ValueError(f"unknown k-BFT regime {regime!r}; use train, past, future, random or all")
  k = min(k, n)
  start = int(rng.integers(0, n - k + 1))
  return start, start + k


def _kbft(record, rng, visuals, content_only, ctx, regime="train", k=None, **_):
  """answer: {"scenes": (0-based masked scene indices), "replay": (int per masked scene)} or, content-only,
  {"scenes": ..., "captions": (masked caption texts)}."""
  b, scenes = record.behavior, record.content.scenes
  lo, hi = kbft_window(len(scenes), rng, regime, k)
  masked = tuple(range(lo, hi))
  head = _video_header(record)
  if content_only:
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(
        s, replay=None, captions=MASK if lo <= i < hi else ""))
    target = ", ".join(f"Scene {i + 1}: {{Captions: {_captions(scenes[i])}}}" for i in masked)
    prompt = head + body + "Predict the masked captions.\n"
    return _make("kbft", VERSIONS["kbft"], prompt, target, visuals,
                 {"scenes": masked, "captions": tuple(_captions(scenes[i]) for i in masked)})
  replay = tuple(_replay_int(v) for v in b.replay)
  body = _scene_lines(record, visuals, lambda i, s: _scene_fields(
      s, replay=MASK if lo <= i < hi else str(replay[i])))
  tail = []
  if b.views is not None:
    tail.append(f"Views: {views_in_words(b.views)}")
    if b.likes is not None:
      tail.append(f"Likes-per-View: {likes_per_view(b.likes, b.views)}")
  prompt = head + body + (", ".join(tail) + "\n" if tail else "") + "Predict the masked replay values.\n"
  target = ", ".join(f"Scene {i + 1}: {{Replay: {replay[i]}%}}" for i in masked)
  return _make("kbft", VERSIONS["kbft"], prompt, target, visuals,
               {"scenes": masked, "replay": tuple(replay[i] for i in masked)})


# ---------------------------------------------------------------------------------------------
# Content simulation: pick a scene's masked ASR among 25 options; write a tweet given its likes.

def _content_simulation_choice(record, rng, visuals, content_only, ctx, **_):
  """answer: the 1-based number of the correct option."""
  scenes = record.content.scenes
  candidates = [i for i, s in enumerate(scenes) if s.asr.strip()]
  which = candidates[int(rng.integers(len(candidates)))]
  truth = _clean(scenes[which].asr)
  pool = [t for t in (ctx.asr_pool if ctx else ()) if t != truth]
  picks = rng.choice(len(pool), size=min(NUM_CHOICES - 1, len(pool)), replace=False) if pool else []
  options = [truth] + [pool[int(j)] for j in picks]
  order = rng.permutation(len(options))
  options = [options[int(j)] for j in order]
  answer = options.index(truth) + 1
  replay = None if content_only or record.behavior.replay is None else [
      _replay_int(v) for v in record.behavior.replay]
  body = _scene_lines(record, visuals, lambda i, s: _scene_fields(
      s, replay=None if replay is None else str(replay[i]), asr=MASK if i == which else ""))
  listing = "".join(f"{j + 1}. {t}\n" for j, t in enumerate(options))
  prompt = (_video_header(record) + body + f"Which option is the masked ASR of scene {which + 1}?\n"
            + listing + "Answer: ")
  return _make("content_simulation_choice", VERSIONS["content_simulation_choice"], prompt, str(answer),
               visuals, answer)


def _tweet_header(record) -> str:
  who = record.communicator
  brand = _clean(who.brand or who.account)
  line = f"Given a tweet of {brand} posted by {_clean(who.account)}"
  if who.followers is not None:
    line += f" ({compact_count(who.followers)} followers)"
  if record.time:
    line += f" on {record.time}"
  return line + "."


def _tweet_generation(record, rng, visuals, content_only, ctx, **_):
  """answer: the tweet text."""
  media = _post_media(visuals)
  desc = _media_description(record)
  media_line = " ".join(p for p in (media, f"{{{desc}}}" if desc else "") if p)
  prompt = (f"Generate a tweet given the media verbalization{'' if content_only else ' and the likes it got'}.\n"
            f"Account: {_clean(record.communicator.account)}"
            f" ({_clean(record.communicator.brand or record.communicator.account)})"
            + (f", {record.time}" if record.time else "") + "\n"
            + (f"Media: {media_line}\n" if media_line else ""))
  if not content_only:
    prompt += f"This tweet has {ctx.like_levels.level(record)} likes.\n"
  prompt += "Tweet: "
  text = _clean(record.content.text)
  return _make("tweet_generation", VERSIONS["tweet_generation"], prompt, text, visuals, text)


# ---------------------------------------------------------------------------------------------
# Behavior understanding: why is a scene the most replayed; comment sentiment with a reason.

POSITIVE_WORDS = frozenset(
    "love loved lovely great amazing awesome beautiful wonderful delightful best fantastic brilliant "
    "adorable gorgeous happy smile smiling fun favorite perfect stunning cute nice wow".split())
NEGATIVE_WORDS = frozenset(
    "hate hated awful terrible bad worst ugly boring annoying sad depressing gloomy angry furious "
    "disappointing disappointed dull horrible waste cry crying upset".split())


def comment_sentiment(comments: Sequence[str]) -> tuple[str, tuple[int, ...]]:
  """("positive" | "negative" | "neutral", indices of the comments that decided it) by word lexicon."""
  scores = []
  for c in comments:
    words = re.findall(r"[a-z']+", c.lower())
    scores.append(sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words))
  total = sum(scores)
  if total == 0:
    return "neutral", tuple(i for i, s in enumerate(scores) if s == 0)[:2]
  sign = 1 if total > 0 else -1
  return ("positive" if sign > 0 else "negative"), tuple(i for i, s in enumerate(scores) if s * sign > 0)[:2]


def _behavior_understanding(record, rng, visuals, content_only, ctx, kind=None, **_):
  """kind "replay" (videos with replays; answer: 1-based most replayed scene) or "sentiment"
  (items with comments; answer: "positive" | "negative" | "neutral")."""
  kind = kind or ("replay" if _has_video_replay(record) else "sentiment")
  version = VERSIONS["behavior_understanding"]
  if kind == "replay":
    replay = [_replay_int(v) for v in record.behavior.replay]
    top = int(np.argmax(replay))
    scene = record.content.scenes[top]
    shows = _captions(scene) or _clean(scene.asr)
    head = _video_header(record)
    if content_only:
      body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=None, captions=None))
      prompt = head + body + f"What does scene {top + 1} show?\n"
      return _make("behavior_understanding", version, prompt, f"Scene {top + 1} shows {shows}.", visuals, shows)
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=str(replay[i]), captions=None))
    prompt = head + body + "Which scene is the most replayed, and why?\n"
    target = f"Scene {top + 1} is the most replayed (Replays: {replay[top]}) because it shows {shows}."
    return _make("behavior_understanding", version, prompt, target, visuals, top + 1)
  if kind != "sentiment":
    raise ValueError(f"unknown behavior_understanding kind {kind!r}; use replay or sentiment")
  head = _post_header(record, visuals)
  if content_only:
    desc = _media_description(record) or _clean(record.content.text or record.content.title)
    return _make("behavior_understanding", version, head + "Describe the media.\n", desc, visuals, desc)
  comments = [_clean(c) for c in record.behavior.comments]
  label, why = comment_sentiment(comments)
  listing = "".join(f"{i + 1}. {c}\n" for i, c in enumerate(comments))
  prompt = head + "Comments:\n" + listing + "What is the overall sentiment of the comments, and why?\n"
  quotes = " and ".join(f'"{comments[i]}"' for i in why)
  target = f"{label.capitalize()}, because people wrote {quotes}." if quotes else f"{label.capitalize()}."
  return _make("behavior_understanding", version, prompt, target, visuals, label)


def _post_header(record, visuals) -> str:
  """A post or tweet with its images: account, brand/subreddit, date, title, text, media description."""
  c, who = record.content, record.communicator
  where = f"r/{_clean(c.subreddit)}" if c.subreddit else _clean(who.brand or who.account)
  line = f"Post by {_clean(who.account or 'someone')}" + (f" in {where}" if where else "")
  if record.time:
    line += f" on {record.time}"
  lines = [line + "."]
  if visuals:
    lines.append("Media: " + _post_media(visuals))
  for name, value in (("Title", c.title), ("Text", c.text)):
    if value.strip():
      lines.append(f"{name}: {_clean(value)}")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Twitter: high or low likes relative to the account's own likes.

def _likes_high_low(record, rng, visuals, content_only, ctx, **_):
  """answer: "high" | "low" (content-only: the media description)."""
  desc = _media_description(record)
  media = " ".join(p for p in (_post_media(visuals), f"{{{desc}}}" if desc and not content_only else "")
                   if p)
  prompt = (_tweet_header(record) + f" Tweet: {_clean(record.content.text)}"
            + (f" Media: {media}." if media else "") + "\n")
  if content_only:
    return _make("likes_high_low", VERSIONS["likes_high_low"], prompt + "Describe the media.\n", desc,
                 visuals, desc)
  level = ctx.like_levels.level(record)
  prompt += "Predict whether it will receive high or low likes.\n"
  return _make("likes_high_low", VERSIONS["likes_high_low"], prompt, f"This tweet has {level} likes.",
               visuals, level)


# ---------------------------------------------------------------------------------------------
# BLIFT (Behavior-LLaVA): one conversation, scene descriptions then `>>> BEHAVIOR <<<` and behavior.

def _blift(record, rng, visuals, content_only, ctx, **_):
  """answer: {"likes_percent": float | None, "upvotes": float | None, "comments": (str, ...),
  "replay": (float 0-1 per scene) | None}; content-only: the scene descriptions."""
  c, b, who = record.content, record.behavior, record.communicator
  is_video = _has_video_replay(record) or any(m.kind == "video" for m in c.media)
  user = [f"Title: {_clean(c.title)}" if c.title.strip() else None,
          f"Posted by: {_clean(who.brand or who.account)}" if (who.brand or who.account) else None,
          f"Subreddit: r/{_clean(c.subreddit)}" if c.subreddit else None,
          f"Text: {_clean(c.text)}" if c.text.strip() else None]
  asr = " ".join(_clean(s.asr) for s in c.scenes if s.asr.strip())
  if asr:
    user.append(f"ASR: {asr}")
  media = " ".join(IMAGE for _ in visuals)
  ask = "Describe the media scene by scene"
  if not content_only:
    ask += (", then predict the share of viewers who like it, the top comments, and the replay value per scene"
            if is_video else ", then predict how many people like it and the top comments")
  prompt = (f"SYSTEM: {BLIFT_SYSTEM}\nUSER: " + (media + "\n" if media else "")
            + "".join(u + "\n" for u in user if u) + ask + ".\nASSISTANT: ")
  scenes = [f"Scene {i + 1}: {_captions(s) or _clean(s.ocr) or _clean(s.asr)}." for i, s in enumerate(c.scenes)]
  description = " ".join(scenes) if scenes else (_clean(c.description) or _clean(c.title))
  if content_only:
    return _make("blift", VERSIONS["blift"], prompt, description, visuals, description)
  behavior = [description, BEHAVIOR_SEPARATOR]
  lpc = None
  if b.likes is not None and b.views:
    lpc = 100.0 * b.likes / b.views
    behavior.append(f"The video will be liked by {lpc:.1f}% of viewers.")
  elif b.upvotes is not None:
    behavior.append(f"The post will receive {views_in_words(b.upvotes)} upvotes.")
  comments = tuple(_clean(x) for x in b.comments[:5])
  if comments:
    behavior.append("Top comments: " + " ".join(f"{i + 1}. {x}" for i, x in enumerate(comments)))
  replay = None
  if _has_video_replay(record):
    replay = tuple(round(_replay_int(v) / 100.0, 2) for v in b.replay)
    behavior.append("Replays: " + ", ".join(f"Scene {i + 1}: {v:.2f}" for i, v in enumerate(replay)))
  answer = {"likes_percent": lpc, "upvotes": b.upvotes, "comments": comments, "replay": replay}
  return _make("blift", VERSIONS["blift"], prompt, "\n".join(behavior), visuals, answer)


# ---------------------------------------------------------------------------------------------
# The task table.

VERSIONS = {
    "behavior_simulation": "lcbm-bsim-v1",
    "kbft": "lcbm-kbft-v1",
    "content_simulation_choice": "lcbm-csim25-v1",
    "tweet_generation": "lcbm-tweetgen-v1",
    "behavior_understanding": "lcbm-bund-v1",
    "likes_high_low": "lcbm-likes-hl-v1",
    "blift": "blift-conv-v1",
}


def _level_known(r, ctx):
  return ctx is not None and ctx.like_levels is not None and ctx.like_levels.level(r) is not None


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("behavior_simulation", VERSIONS["behavior_simulation"],
             lambda r, ctx: _has_video_replay(r), _behavior_simulation),
    TaskSpec("kbft", VERSIONS["kbft"], lambda r, ctx: _has_video_replay(r), _kbft),
    TaskSpec("content_simulation_choice", VERSIONS["content_simulation_choice"],
             lambda r, ctx: (ctx is not None and bool(ctx.asr_pool) and len(r.content.scenes) > 1
                             and any(s.asr.strip() for s in r.content.scenes)),
             _content_simulation_choice),
    TaskSpec("tweet_generation", VERSIONS["tweet_generation"],
             lambda r, ctx: bool(r.content.text.strip()) and _level_known(r, ctx),
             _tweet_generation),
    TaskSpec("behavior_understanding", VERSIONS["behavior_understanding"],
             lambda r, ctx: _has_video_replay(r) or bool(r.behavior.comments), _behavior_understanding),
    # Medium-level tweets are left out: the task is high vs low, as in LCBM.
    TaskSpec("likes_high_low", VERSIONS["likes_high_low"],
             lambda r, ctx: (bool(r.content.text.strip()) and _level_known(r, ctx)
                             and ctx.like_levels.level(r) != "medium"), _likes_high_low),
    TaskSpec("blift", VERSIONS["blift"],
             lambda r, ctx: bool(r.behavior.comments) or r.behavior.upvotes is not None or _has_video_replay(r),
             _blift),
)}


def applies(record: ContentBehaviorRecord, task: str, context: Context | None = None) -> bool:
  """Whether `verbalize(record, task, context=context)` has what it needs."""
  return TASKS[task].applies(record, context)


def verbalize(record: ContentBehaviorRecord, task: str, *, rng: np.random.Generator, max_images: int,
              content_only: bool = False, context: Context | None = None, **options) -> Verbalized:
  """Writes `record` for `task` (a key of TASKS). `options`: kbft `regime` ("train", "past", "future",
  "random", "all") and `k`; behavior_understanding `kind` ("replay" | "sentiment").
  `context` (from `Context.fit(train_records)`) is needed by likes_high_low, tweet_generation
  (like levels) and content_simulation_choice (distractor ASR)."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
  if not TASKS[task].applies(record, context):
    raise ValueError(f"record {record.record_id} ({record.source}) cannot be verbalized for {task}; "
                     f"check verbalize.applies() first")
  visuals = _visuals(record, max_images)
  out = TASKS[task].build(record, rng, visuals, content_only, context, **options)
  assert out.text.count(IMAGE) == len(out.media), (out.text.count(IMAGE), len(out.media))
  return out


# ---------------------------------------------------------------------------------------------
# Parsing generated text back into answers (evaluation reads model output with these).

_REPLAY_RE = re.compile(r"Scene (\d+): \{Replay: (\d+)%\}")
_BLIFT_REPLAY_RE = re.compile(r"Scene (\d+): ([01](?:\.\d+)?)\b")


def parse_replays(text: str) -> dict[int, int]:
  """"Scene 2: {Replay: 60%}, ..." -> {1: 60, ...} (0-based scene -> 0-100); later duplicates are ignored."""
  out: dict[int, int] = {}
  for scene, value in _REPLAY_RE.findall(text):
    out.setdefault(int(scene) - 1, min(100, int(value)))
  return out


def parse_blift_replays(text: str) -> dict[int, float]:
  """The part after "Replays:" of a BLIFT answer: "Scene 1: 0.06, ..." -> {0: 0.06, ...}."""
  _, _, tail = text.partition("Replays:")
  out: dict[int, float] = {}
  for scene, value in _BLIFT_REPLAY_RE.findall(tail):
    out.setdefault(int(scene) - 1, min(1.0, float(value)))
  return out


def parse_level(text: str) -> str | None:
  """"This tweet has high likes." -> "high" (first of high/medium/low found), else None."""
  m = re.search(r"\b(high|medium|low)\b", text.lower())
  return m.group(1) if m else None


def parse_choice(text: str) -> int | None:
  """"18" -> 18 (the first integer in the text), else None."""
  m = re.search(r"\d+", text)
  return int(m.group(0)) if m else None


def parse_views(text: str) -> float | None:
  """"Views: 2.1 Million" -> 2.1e6; "346 thousand" -> 346000.0."""
  m = re.search(r"Views: ([\d.]+)(?: (thousand|Million|Billion))?", text)
  if not m:
    return None
  scale = {None: 1.0, "thousand": 1e3, "Million": 1e6, "Billion": 1e9}[m.group(2)]
  try:
    return float(m.group(1)) * scale
  except ValueError:
    return None


def parse_likes_per_view(text: str) -> float | None:
  """"Likes-per-View: 2.5%" -> 2.5 (percent)."""
  m = re.search(r"Likes-per-View: ([\d.]+)%", text)
  try:
    return float(m.group(1)) if m else None
  except ValueError:
    return None
