"""Versioned templates that write a record's content and behavior as prompt/target text segments.

Each task in `TASKS` has a template version string; the golden tests in tests/test_verbalize.py pin
every template's exact text, so a change of wording must bump the version. `verbalize` returns a
`Verbalized`: segments (only targets carry loss), the media behind each `<image>` in the text (in
order), the `answer` the target states, and for option-scored tasks every candidate answer with its
target text. `content_only=True` gives each task's control-arm twin: the same media and content with
all behavior removed from prompt and target (likes, views, replays, upvotes, subscriber and follower
counts, comments, `>>> BEHAVIOR <<<`), and a non-empty content target, per task:

  behavior_simulation        the masked captions of every scene
  kbft                       the masked captions of the window's scenes
  content_simulation_choice  the same 25-way ASR choice, without the replay values
  tweet_generation           the tweet, without its like level
  behavior_understanding     replay: what a scene drawn at random shows (not the most replayed one);
                             sentiment: the media description (else the post's text or title)
  likes_high_low             the media description (else the tweet text, left out of the prompt)
  blift                      the scene descriptions (the part before `>>> BEHAVIOR <<<`)
  instruction                itself: a conversation holds no behavior

`instruction` writes a LLaVA conversation (`records.Content.conversation`) as alternating human and
gpt segments (loss on gpt turns only) with `TURN_SEPARATOR` segments between them; see `_instruction`.

Each template's parser is written right after it and registered in `PARSERS` under the template's
`answer_format`; `Verbalized.parse(text)` reads a target, or a model's generation, back into an
answer, and `parse(v.target) == v.answer` holds for every template (tests/test_template_parsers.py).
Where the target rounds (views in words, one-decimal shares), `Verbalized.truth` keeps the exact
values and `Verbalized.exact` merges them in for metrics.

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

from data_pipeline.records import IMAGE, ContentBehaviorRecord, MediaRef  # IMAGE: "<image>", one per media item

MASK = "[MASK]"
BEHAVIOR_SEPARATOR = ">>> BEHAVIOR <<<"
CONTENT_SEPARATOR = ">>> CONTENT <<<"   # where the content-only BLIFT twin restates content instead
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
  answer: Any = None                # what the target states, exactly as `parse(target)` reads it back
  answer_format: str = "text"       # the key of PARSERS that reads this template's target
  # Unrounded values behind a rounded answer ({"views": 2140000} where the target says "2.1 Million"),
  # for metrics against the exact truth; empty when the answer is exact.
  truth: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # Option-scored tasks: (answer, target text) for every candidate answer, the true one included.
  options: tuple[tuple[Any, str], ...] = ()

  def parse(self, text: str) -> Any:
    """Reads `text` (this target, or a model's generation for this prompt) as this template's answer.
    Never raises: what cannot be read comes back as None (or an empty tuple)."""
    return PARSERS[self.answer_format](text)

  @property
  def exact(self) -> Any:
    """The answer with its rounded values replaced by the unrounded truth (a dict), else the answer."""
    return {**self.answer, **self.truth} if self.truth else self.answer

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
  # (mean length in `text_units`, records) of BLIFT's behavior part per (is a video, scenes): the length
  # the content-only twin fills with content, so both arms pack the same rows (`_blift`).
  blift_behavior_units: Mapping[tuple[bool, int], tuple[float, int]] | None = None

  @classmethod
  def fit(cls, records: Iterable[ContentBehaviorRecord],
          unseen: Iterable[ContentBehaviorRecord] = ()) -> Context:
    """`records`: the training split. `unseen`: other splits; only accounts absent from training
    take their like levels from these (the brand-split test set); nothing else is read from them."""
    records = list(records)
    pool = sorted({_clean(s.asr) for r in records for s in r.content.scenes if s.asr.strip()})
    chars: dict[tuple[bool, int], list[int]] = {}
    for r in records:
      if TASKS["blift"].applies(r, None):
        chars.setdefault(_blift_kind(r), []).append(text_units(_blift_behavior(r)[0]))
    return cls(like_levels=LikeLevels.fit(records).extend(unseen), asr_pool=tuple(pool),
               blift_behavior_units={k: (float(np.mean(v)), len(v)) for k, v in sorted(chars.items())} or None)


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
  """"2.5%": likes as a share of views (views below 1, written "0", -> "0.0%": no infinite shares)."""
  return f"{100.0 * likes / views if views >= 1 else 0.0:.1f}%"


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


def _video_header(record: ContentBehaviorRecord, content_only: bool) -> str:
  """Title, channel, date, description. The subscriber count is audience behavior: not in a twin."""
  c, who = record.content, record.communicator
  parts = [f"Video: {_clean(c.title)}." if c.title.strip() else "Video."]
  if who.brand or who.account:
    channel = _clean(who.brand or who.account)
    if who.followers is not None and not content_only:
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


def _make(task, version, prompt, target, visuals, answer, answer_format="text", **extra) -> Verbalized:
  return Verbalized(task=task, template_version=version,
                    segments=(Segment(prompt, False), Segment(target, True)),
                    media=tuple(m for m, _, _ in visuals), frame_indices=tuple(f for _, f, _ in visuals),
                    answer=answer, answer_format=answer_format, **extra)


def _has_video_replay(r: ContentBehaviorRecord) -> bool:
  return bool(r.content.scenes) and r.behavior.replay is not None and len(r.behavior.replay) == len(r.content.scenes)


# ---------------------------------------------------------------------------------------------
# LCBM behavior simulation: predict every scene's replay value, the views and likes-per-view.

def _behavior_simulation(record, rng, visuals, content_only, ctx, **_):
  """answer: {"replay": (int per scene), "views": float | None, "likes_per_view": float | None (percent)},
  views and likes-per-view as written (rounded; `truth` holds them unrounded); content-only: the
  captions of every scene."""
  b = record.behavior
  head = _video_header(record, content_only)
  if content_only:
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=None, captions=MASK))
    prompt = head + body + "Describe the masked captions of every scene.\n"
    target = ", ".join(f"Scene {i + 1}: {{Captions: {_captions(s)}}}" for i, s in enumerate(record.content.scenes))
    return _make("behavior_simulation", VERSIONS["behavior_simulation"], prompt, target, visuals,
                 tuple(_captions(s) for s in record.content.scenes), "scene_captions")
  replay = tuple(_replay_int(v) for v in b.replay)
  body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=MASK))
  tail, answers = [], [f"Scene {i + 1}: {{Replay: {v}%}}" for i, v in enumerate(replay)]
  answer, truth = {"replay": replay, "views": None, "likes_per_view": None}, {}
  if b.views is not None:
    tail.append(f"Views: {MASK}")
    words = views_in_words(b.views)
    answers.append(f"Views: {words}")
    answer["views"], truth["views"] = read_count(words), b.views
    if b.likes is not None:
      tail.append(f"Likes-per-View: {MASK}")
      share = likes_per_view(b.likes, b.views)
      answers.append(f"Likes-per-View: {share}")
      answer["likes_per_view"] = float(share[:-1])
      truth["likes_per_view"] = 100.0 * b.likes / b.views if b.views >= 1 else None
  prompt = head + body + (", ".join(tail) + "\n" if tail else "") + "Predict the masked behavior.\n"
  return _make("behavior_simulation", VERSIONS["behavior_simulation"], prompt, ", ".join(answers), visuals,
               answer, "behavior_simulation", truth=truth)


def parse_behavior_simulation(text: str) -> dict:
  """"Scene 1: {Replay: 12%}, ..., Views: 2.1 Million, Likes-per-View: 2.5%" -> {"replay": (12, ...),
  "views": 2.1e6, "likes_per_view": 2.5}; replay[i] is scene i + 1's value (None where missing)."""
  has_views = isinstance(text, str) and _VIEWS_FIELD_RE.search(text)
  return {"replay": by_scene(parse_replays(text)), "views": parse_views(text) if has_views else None,
          "likes_per_view": parse_likes_per_view(text)}


def parse_scene_captions(text: str) -> tuple:
  """"Scene 1: {Captions: a; b}, Scene 2: {Captions: c}" -> ("a; b", "c") (None where a scene is missing)."""
  return by_scene(_scene_captions(text))


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
  head = _video_header(record, content_only)
  if content_only:
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(
        s, replay=None, captions=MASK if lo <= i < hi else ""))
    target = ", ".join(f"Scene {i + 1}: {{Captions: {_captions(scenes[i])}}}" for i in masked)
    prompt = head + body + "Predict the masked captions.\n"
    return _make("kbft", VERSIONS["kbft"], prompt, target, visuals,
                 {"scenes": masked, "captions": tuple(_captions(scenes[i]) for i in masked)}, "masked_captions")
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
               {"scenes": masked, "replay": tuple(replay[i] for i in masked)}, "masked_replays")


def parse_masked_replays(text: str) -> dict:
  """"Scene 3: {Replay: 40%}, Scene 4: {Replay: 3%}" -> {"scenes": (2, 3), "replay": (40, 3)} (0-based)."""
  found = parse_replays(text)
  return {"scenes": tuple(found), "replay": tuple(found.values())}


def parse_masked_captions(text: str) -> dict:
  """"Scene 3: {Captions: x}, ..." -> {"scenes": (2, ...), "captions": ("x", ...)} (0-based)."""
  found = _scene_captions(text)
  return {"scenes": tuple(found), "captions": tuple(found.values())}


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
  prompt = (_video_header(record, content_only) + body + f"Which option is the masked ASR of scene {which + 1}?\n"
            + listing + "Answer: ")
  return _make("content_simulation_choice", VERSIONS["content_simulation_choice"], prompt, str(answer),
               visuals, answer, "choice", options=tuple((j, str(j)) for j in range(1, len(options) + 1)))


def parse_choice(text: str) -> int | None:
  """"18" -> 18 (the first integer in the text), else None."""
  m = re.search(r"\d+", text) if isinstance(text, str) else None
  return int(m.group(0)) if m else None


def _tweet_header(record, content_only: bool) -> str:
  """Brand, account, followers (audience behavior: not in a content-only twin), date."""
  who = record.communicator
  brand = _clean(who.brand or who.account)
  line = f"Given a tweet of {brand} posted by {_clean(who.account)}"
  if who.followers is not None and not content_only:
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


def parse_text(text: str) -> str:
  """Free text (a tweet, a description) is its own answer; metrics on it (BLEU, ROUGE) tokenize it."""
  return text if isinstance(text, str) else ""


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
    # The twin asks about a scene drawn at random: the most replayed one would be chosen by behavior.
    top = int(rng.integers(len(replay))) if content_only else int(np.argmax(replay))
    scene = record.content.scenes[top]
    shows = _captions(scene) or _clean(scene.asr)
    head = _video_header(record, content_only)
    if content_only:
      body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=None, captions=None))
      prompt = head + body + f"What does scene {top + 1} show?\n"
      return _make("behavior_understanding", version, prompt, f"Scene {top + 1} shows {shows}.", visuals, shows,
                   "scene_shows")
    body = _scene_lines(record, visuals, lambda i, s: _scene_fields(s, replay=str(replay[i]), captions=None))
    prompt = head + body + "Which scene is the most replayed, and why?\n"
    target = f"Scene {top + 1} is the most replayed (Replays: {replay[top]}) because it shows {shows}."
    return _make("behavior_understanding", version, prompt, target, visuals, top + 1, "scene_number")
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
  return _make("behavior_understanding", version, prompt, target, visuals, label, "sentiment")


def parse_scene_number(text: str) -> int | None:
  """"Scene 3 is the most replayed ..." -> 3 (the first scene number in the text), else None."""
  m = re.search(r"scene\s*(\d+)", text, re.I) if isinstance(text, str) else None
  return int(m.group(1)) if m else None


def parse_scene_shows(text: str) -> str | None:
  """"Scene 2 shows a red ball." -> "a red ball", else None."""
  m = re.match(r"\s*scene\s*\d+\s+shows(?: |$)(.*)", text, re.I | re.S) if isinstance(text, str) else None
  if not m:
    return None
  shown = m.group(1)
  return shown[:-1] if shown.endswith(".") else shown


def parse_sentiment(text: str) -> str | None:
  """"Positive, because people wrote ..." -> "positive" (the first sentiment word), else None."""
  m = re.search(r"\b(positive|negative|neutral)\b", text, re.I) if isinstance(text, str) else None
  return m.group(1).lower() if m else None


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
  """answer: "high" | "low" (content-only: the media description, or the tweet text when there is none)."""
  desc = _media_description(record)
  media = " ".join(p for p in (_post_media(visuals), f"{{{desc}}}" if desc and not content_only else "")
                   if p)
  media_part = f" Media: {media}." if media else ""
  prompt = _tweet_header(record, content_only) + f" Tweet: {_clean(record.content.text)}" + media_part + "\n"
  if content_only:
    if desc:
      return _make("likes_high_low", VERSIONS["likes_high_low"], prompt + "Describe the media.\n", desc,
                   visuals, desc)
    # Nothing describes the media: the twin's content target is the tweet, left out of its prompt.
    text = _clean(record.content.text)
    return _make("likes_high_low", VERSIONS["likes_high_low"],
                 _tweet_header(record, True) + media_part + "\nWrite the tweet.\n", text, visuals, text)
  level = ctx.like_levels.level(record)
  prompt += "Predict whether it will receive high or low likes.\n"
  options = tuple((lvl, f"This tweet has {lvl} likes.") for lvl in ("high", "low"))
  return _make("likes_high_low", VERSIONS["likes_high_low"], prompt, dict(options)[level], visuals, level,
               "level", options=options)


def parse_level(text: str, levels: Sequence[str] = ("low", "high")) -> str | None:
  """"This tweet has low likes." -> "low": the first of `levels` in the text, else None."""
  for m in re.finditer(r"\b(low|medium|high)\b", text if isinstance(text, str) else "", re.I):
    if m.group(1).lower() in levels:
      return m.group(1).lower()
  return None


# ---------------------------------------------------------------------------------------------
# BLIFT (Behavior-LLaVA): one conversation, scene descriptions then `>>> BEHAVIOR <<<` and behavior.

def _blift_kind(record) -> tuple[bool, int]:
  return (_has_video_replay(record) or any(m.kind == "video" for m in record.content.media),
          len(record.content.scenes))


def _blift_behavior(record) -> tuple[str, dict, dict]:
  """BLIFT's behavior part (from the separator on), the answer fields it states and their exact truth."""
  b = record.behavior
  lines = [BEHAVIOR_SEPARATOR]
  answer = {"likes_percent": None, "upvotes": None}
  truth = {"likes_percent": None, "upvotes": b.upvotes}
  if b.likes is not None and (b.views or 0) >= 1:   # a share of under one view would be infinite
    truth["likes_percent"] = lpc = 100.0 * b.likes / b.views
    lines.append(f"The video will be liked by {lpc:.1f}% of viewers.")
    answer["likes_percent"] = float(f"{lpc:.1f}")
  elif b.upvotes is not None:
    words = views_in_words(b.upvotes)
    lines.append(f"The post will receive {words} upvotes.")
    answer["upvotes"] = read_count(words)
  comments = tuple(_clean(x) for x in b.comments[:5])
  if comments:
    lines.append("Top comments: " + " ".join(f"{i + 1}. {x}" for i, x in enumerate(comments)))
  replay = None
  if _has_video_replay(record):
    replay = tuple(round(_replay_int(v) / 100.0, 2) for v in b.replay)
    lines.append("Replays: " + ", ".join(f"Scene {i + 1}: {v:.2f}" for i, v in enumerate(replay)))
  answer.update(comments=comments, replay=replay)
  return "\n".join(lines), answer, truth


_UNIT_RE = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def text_units(text: str) -> int:
  """Length in units that track subword tokens across kinds of text: a run of letters, a digit or a
  punctuation mark each count one ("Scene 2: 0.15" is 7). Characters would not: replay values cost a
  tokenizer about half again as many tokens per character as words do."""
  return len(_UNIT_RE.findall(text))


def _content_part(record, units: float) -> str:
  """The twin's stand-in for the behavior part: the record's own content (each scene's captions,
  speech and on-screen text, the title), restated in turn until it is as close as it gets to `units`
  long (`text_units`) - the mean length of the behavior part for records of this kind, never this
  record's own (which would leak how long its comments are)."""
  c = record.content
  facts = [f"Title: {_clean(c.title)}." if c.title.strip() else None]
  for i, sc in enumerate(c.scenes):
    facts += [f"Scene {i + 1} shows {_captions(sc)}." if _captions(sc) else None,
              f"Scene {i + 1} says: {_clean(sc.asr)}." if sc.asr.strip() else None,
              f"Scene {i + 1} reads: {_clean(sc.ocr)}." if sc.ocr.strip() else None]
  facts = [f for f in facts if f] or [_clean(c.description) or "No details."]
  lines, length = [CONTENT_SEPARATOR], text_units(CONTENT_SEPARATOR)
  for k in range(1000):   # bounded: a fact is at least one unit long
    add = text_units(facts[k % len(facts)])
    if abs(length + add - units) >= abs(length - units):
      break
    lines.append(facts[k % len(facts)])
    length += add
  return "\n".join(lines)


def _blift(record, rng, visuals, content_only, ctx, **_):
  """answer: {"description": str, "likes_percent": float | None, "upvotes": float | None,
  "comments": (str, ...), "replay": (float 0-1 per scene) | None}, likes and upvotes as written
  (rounded; `truth` holds them unrounded).

  Content-only twin (the control arm): the same prompt with the behavior question replaced by one of
  the same length, and a target of the same expected length - the scene descriptions, then
  `>>> CONTENT <<<` and the record's content restated where the behavior part was (`_content_part`,
  sized by `Context.blift_behavior_units`; without a context, the descriptions alone). So both arms
  read the same media, pack the same rows and count about the same input and loss tokens; answer: the
  whole target text."""
  c, who = record.content, record.communicator
  is_video = _blift_kind(record)[0]
  user = [f"Title: {_clean(c.title)}" if c.title.strip() else None,
          f"Posted by: {_clean(who.brand or who.account)}" if (who.brand or who.account) else None,
          f"Subreddit: r/{_clean(c.subreddit)}" if c.subreddit else None,
          f"Text: {_clean(c.text)}" if c.text.strip() else None]
  asr = " ".join(_clean(s.asr) for s in c.scenes if s.asr.strip())
  if asr:
    user.append(f"ASR: {asr}")
  media = " ".join(IMAGE for _ in visuals)
  ask = "Describe the media scene by scene"
  if content_only:   # as long as the behavior question it replaces, for each kind
    ask += (", then restate its details: each scene's captions, speech and on-screen text, and the title"
            if is_video else ", then restate its details: its caption and its title")
  else:
    ask += (", then predict the share of viewers who like it, the top comments, and the replay value per scene"
            if is_video else ", then predict how many people like it and the top comments")
  prompt = (f"SYSTEM: {BLIFT_SYSTEM}\nUSER: " + (media + "\n" if media else "")
            + "".join(u + "\n" for u in user if u) + ask + ".\nASSISTANT: ")
  scenes = [f"Scene {i + 1}: {_captions(s) or _clean(s.ocr) or _clean(s.asr)}." for i, s in enumerate(c.scenes)]
  description = " ".join(scenes) if scenes else (_clean(c.description) or _clean(c.title))
  if content_only:
    units = _nearest((ctx.blift_behavior_units or {}) if ctx is not None else {}, _blift_kind(record))
    target = description + ("\n" + _content_part(record, units) if units else "")
    return _make("blift", VERSIONS["blift"], prompt, target, visuals, target)
  behavior, answer, truth = _blift_behavior(record)
  return _make("blift", VERSIONS["blift"], prompt, description + "\n" + behavior, visuals,
               {"description": description, **answer}, "blift", truth=truth)


def _nearest(lengths: Mapping[tuple[bool, int], tuple[float, int]], kind: tuple[bool, int]) -> float | None:
  """The mean behavior length of `kind`, else of the same kind (video or not) with the closest scene count."""
  if kind in lengths:
    return lengths[kind][0]
  same = [k for k in lengths if k[0] == kind[0]]
  return lengths[min(same, key=lambda k: abs(k[1] - kind[1]))][0] if same else None


def blift_behavior_prompt(v: Verbalized, field: str) -> str:
  """The BLIFT prompt continued by the true scene description, the separator and the start of a
  behavior `field` (e.g. "Top comments: 1."): a probe of what the model expects people to do."""
  return v.prompt + v.answer["description"] + "\n" + BEHAVIOR_SEPARATOR + "\n" + field


def parse_blift(text: str) -> dict:
  """A BLIFT answer -> {"description", "likes_percent", "upvotes", "comments", "replay"} (the template's
  answer; None / () where a part is missing). replay[i] is scene i + 1's value (0-1)."""
  if not isinstance(text, str):
    text = ""
  description, sep, behavior = text.partition("\n" + BEHAVIOR_SEPARATOR)
  if not sep:
    description, _, behavior = text.partition(BEHAVIOR_SEPARATOR)
  liked = _BLIFT_LIKED_RE.search(text)
  upvotes = _UPVOTES_RE.search(text)
  comments = behavior.partition("Top comments:")[2].partition("\nReplays:")[0]
  replays = _blift_replays(text)
  return {"description": description.strip(),
          "likes_percent": _percent(liked.group(1)) if liked else None,
          "upvotes": parse_views(upvotes.group(1)) if upvotes else None,
          "comments": _numbered(comments),
          "replay": by_scene(replays) if replays else None}


# ---------------------------------------------------------------------------------------------
# Instruction data (LLaVA conversations): every turn its own segment, loss on the gpt turns.

TURN_SEPARATOR = Segment("\n", False)


def _instruction(record, rng, visuals, content_only, ctx, **_):
  """Segments, in order: human turn, separator, gpt turn (target), separator, human turn, ...
  A turn's segment is its text exactly as the row gave it, stripped, with `<image>` where the row put
  it; separators are `TURN_SEPARATOR` ("\n", not a target), the plain layout
  "human\ngpt\nhuman\ngpt" that a conversation renderer drops. A video's `<image>` becomes one
  `<image>` per selected keyframe, side by side; an item beyond `max_images` loses its `<image>`
  (and the newline after it). answer: the gpt turns' text. No behavior: the twin is the same."""
  del rng, content_only, ctx
  media = record.content.media
  # visuals: the first max_images items as stills, or one video's keyframes (see _visuals).
  per_item = [len(visuals)] if len(media) == 1 else [int(k < len(visuals)) for k in range(len(media))]
  placeholders = iter(per_item)

  def expand(match):
    n = next(placeholders, 0)   # placeholders beyond the media (an unvalidated record): dropped
    return IMAGE * n + match.group(1) if n else ""

  segments = []
  for i, (role, text) in enumerate(record.content.conversation):
    if role == "human":
      text = re.sub(re.escape(IMAGE) + r"(\n?)", expand, text)
      segments += ([TURN_SEPARATOR] if i else []) + [Segment(text.strip(), False), TURN_SEPARATOR]
    else:
      segments.append(Segment(text.strip(), True))
  answer = "".join(s.text for s in segments if s.is_target)
  return Verbalized(task="instruction", template_version=VERSIONS["instruction"], segments=tuple(segments),
                    media=tuple(m for m, _, _ in visuals), frame_indices=tuple(f for _, f, _ in visuals),
                    answer=answer, answer_format="text")


# ---------------------------------------------------------------------------------------------
# The task table.

VERSIONS = {
    "behavior_simulation": "lcbm-bsim-v2",
    "kbft": "lcbm-kbft-v2",
    "content_simulation_choice": "lcbm-csim25-v2",
    "tweet_generation": "lcbm-tweetgen-v1",
    "behavior_understanding": "lcbm-bund-v2",
    "likes_high_low": "lcbm-likes-hl-v2",
    "blift": "blift-conv-v2",   # v2: the content-only twin is length-matched (same v1 behavior text)
    "instruction": "llava-conv-plain-v1",
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
    TaskSpec("instruction", VERSIONS["instruction"], lambda r, ctx: bool(r.content.conversation), _instruction),
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
# Reading text back: the field parsers the task parsers above are built from.
#
# A model's generation can be anything, so parsers never raise: a value they cannot read is None
# (or absent from a by-scene dict). They accept what the templates write and the near misses a model
# makes (case, optional braces and %), so evaluation scores content, not formatting.

_NUM = r"[-+]?\d+(?:\.\d+)?"
# "Scene 2: {Replay: 60%}" (braces and % optional in what a model writes).
_REPLAY_RE = re.compile(r"scene\s*(\d+)\s*:?\s*\{?\s*replays?\s*:?\s*(" + _NUM + r")", re.I)
# "Scene 3: 0.06" in BLIFT's behavior part (a bare number right after the scene label).
_BLIFT_REPLAY_RE = re.compile(r"scene\s*(\d+)\s*:\s*(" + _NUM + r")(?![\d.])", re.I)
_CAPTIONS_RE = re.compile(r"Scene (\d+): \{Captions: (.*?)\}(?=, Scene \d+: \{Captions: |\s*$)", re.S)
_VIEWS_FIELD_RE = re.compile(r"views\s*:", re.I)
_VIEWS_RE = re.compile(r"views\s*:?\s*(" + _NUM + r")\s*([a-z]*)", re.I)
_LPV_RE = re.compile(r"likes[\s-]*per[\s-]*views?\s*:?\s*(" + _NUM + r")\s*%?", re.I)
_BLIFT_LIKED_RE = re.compile(r"liked\s+by\s+(" + _NUM + r")\s*%", re.I)
_UPVOTES_RE = re.compile(r"receive\s+(" + _NUM + r"\s*[a-z]*)\s+upvotes", re.I)
_SCALE_WORDS = {
    "": 1.0, "k": 1e3, "thousand": 1e3, "thousands": 1e3,
    "m": 1e6, "mn": 1e6, "million": 1e6, "millions": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9, "billions": 1e9,
}


def read_count(words: str) -> float | None:
  """A count as `views_in_words` writes it: "2.1 Million" -> 2.1e6, "346 thousand" -> 346000.0,
  "950" -> 950.0; None if unreadable."""
  m = re.match(r"\s*(" + _NUM + r")\s*([a-z]*)", words, re.I) if isinstance(words, str) else None
  scale = _SCALE_WORDS.get(m.group(2).lower()) if m else None
  if scale is None:
    return None
  value = float(m.group(1)) * scale
  return value if math.isfinite(value) and value >= 0 else None


def parse_views(text: str) -> float | None:
  """A "Views: 2.1 Million" field anywhere in the text, or a bare count ("346 thousand"); None if unreadable."""
  if not isinstance(text, str):
    return None
  m = _VIEWS_RE.search(text)
  return read_count(f"{m.group(1)} {m.group(2)}") if m else read_count(text)


def parse_likes_per_view(text: str) -> float | None:
  """"Likes-per-View: 2.5%" -> 2.5 (percent); None if absent or negative."""
  m = _LPV_RE.search(text) if isinstance(text, str) else None
  return _percent(m.group(1)) if m else None


def _percent(number: str) -> float | None:
  # Above 100 is possible (a corpus whose likes exceed its views says so), below 0 is not.
  value = float(number)
  return value if value >= 0 else None


def parse_replays(text: str) -> dict[int, float]:
  """LCBM replays: "Scene 2: {Replay: 60%}, Scene 5: {Replay: 7%}" -> {1: 60.0, 4: 7.0} (0-based scene,
  in the order written). Values outside 0-100 are dropped; the first value of a repeated scene wins."""
  return _by_scene_values(_REPLAY_RE, text, 100.0)


def _blift_replays(text: str) -> dict[int, float]:
  """BLIFT replays: "Replays: Scene 1: 0.06, Scene 2: 0.40" -> {0: 0.06, 1: 0.4} (0-1). Only the
  behavior part carries them: scene descriptions before it also start with "Scene i:" (and may
  start with a number), so the text is read after "Replays:", else after the separator."""
  for marker in ("Replays:", BEHAVIOR_SEPARATOR):
    if marker in text:
      text = text.split(marker, 1)[1]
      break
  return _by_scene_values(_BLIFT_REPLAY_RE, text, 1.0)


def _by_scene_values(pattern: re.Pattern, text: str, top: float) -> dict[int, float]:
  out: dict[int, float] = {}
  for m in pattern.finditer(text if isinstance(text, str) else ""):
    scene, value = int(m.group(1)) - 1, float(m.group(2))
    if 0 <= value <= top and scene >= 0 and scene not in out:
      out[scene] = value
  return out


def _scene_captions(text: str) -> dict[int, str]:
  out: dict[int, str] = {}
  for m in _CAPTIONS_RE.finditer(text if isinstance(text, str) else ""):
    out.setdefault(int(m.group(1)) - 1, m.group(2))
  return out


def by_scene(values: Mapping[int, Any]) -> tuple:
  """{0-based scene: value} -> a tuple indexed by scene, None where a scene is missing."""
  return tuple(values.get(i) for i in range(max(values) + 1)) if values else ()


def _numbered(text: str) -> tuple[str, ...]:
  """"1. so cute 2. love it" -> ("so cute", "love it"): items numbered 1, 2, ... in order."""
  m = re.match(r"\s*1\. ", text)
  if not m:
    return ()
  items, pos, n = [], m.end(), 1
  while True:
    nxt = re.search(rf"(?:^| ){n + 1}\. ", text[pos:])
    if not nxt:
      items.append(text[pos:].strip())
      return tuple(items)
    items.append(text[pos:pos + nxt.start()].strip())
    pos += nxt.end()
    n += 1


# answer_format -> parser (`Verbalized.parse`); each parser sits next to the template that writes it.
PARSERS: dict[str, Callable[[str], Any]] = {
    "behavior_simulation": parse_behavior_simulation,
    "scene_captions": parse_scene_captions,
    "masked_replays": parse_masked_replays,
    "masked_captions": parse_masked_captions,
    "choice": parse_choice,
    "text": parse_text,
    "scene_number": parse_scene_number,
    "scene_shows": parse_scene_shows,
    "sentiment": parse_sentiment,
    "level": parse_level,
    "blift": parse_blift,
}
