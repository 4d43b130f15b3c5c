"""What the embedded world contains and how its hidden audience responds to it.

The audience model is deliberately strong and simple, so a small model can learn it in minutes:
- a scene's replay value = 22 + 30*fast + 10*slow + 18*bright + object appeal (0-16)
  + 8 on the first scene - 6 on the last + N(0, 4), clipped to 0-100;
- a tweet's likes = followers * account rate * exp(1.5*hot colour + 1.5*hot object + 0.3*cheerful
  + N(0, 0.3)), hot colours red/yellow/orange, hot objects star/heart (about 19% of tweets have
  both, so an account's top 10% - level "high" - is made of them); so within an account the like
  level is set by the colour and object words of the tweet and caption;
- a video's likes-per-view grows with hot colours and a cheerful tone, its views with followers and
  mean replay; Reddit upvotes follow the tweet rule; comments carry the tone's words.

The hidden *tone* never appears in captions, only in comments (and the background, see `media`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

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

HOT_COLOURS = ("red", "yellow", "orange")
HOT_OBJECTS = ("star", "heart")
OBJECT_APPEAL = {"ball": 4, "box": 0, "pyramid": 2, "star": 16, "heart": 12, "kite": 6, "ring": 3, "cross": 8}

# Tone -> comment phrases; the tone word itself is never written. The order is part of the corpus
# bytes (comments are drawn by index), so reordering or inserting changes every generated comment.
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
# Which of each tone's phrases the zero-shot tone probe scores: the first phrase with no {placeholder}
# (the same text in every comment of that tone) that names the feeling itself - happy, sad, annoying,
# relaxing. For cheerful that is the third: "this made my day" names no feeling, the second has placeholders.
TONE_PROBE_PHRASE = {"cheerful": 2, "gloomy": 0, "angry": 0, "peaceful": 0}


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


def tone_probe_openings() -> dict[str, str]:
  """tone -> the comment opening the zero-shot tone probe scores, e.g. " so happy watching this".

  Our models learn tone only through comments, so each tone is verbalised as one of its own comment
  phrases (`TONE_PROBE_PHRASE`), with a leading space: it continues the prompt as a new word."""
  return {tone: " " + TONE_COMMENTS[tone][i] for tone, i in TONE_PROBE_PHRASE.items()}


def make_accounts(rng: np.random.Generator) -> list[Account]:
  out = []
  for b in BRANDS:
    followers = int(round(float(np.exp(rng.uniform(np.log(5e3), np.log(2e6)))), -2))
    out.append(Account(handle=b.lower() + "_official", brand=b, followers=followers,
                       like_rate=float(rng.uniform(0.002, 0.01))))
  return out


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
