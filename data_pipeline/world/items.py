"""One record of each public schema: a CBC video, a BLIFT Reddit post, a brand tweet.

Each maker draws the record's hidden tone and topic, its scenes, media and behavior from one rng
stream, and returns (row in the source's schema, media bytes, latent labels, the scenes drawn: the
ground truth the instruction rows of `instructions` ask about). Captions and ASR say
what is shown (object, colour, motion, brightness), never the tone; the topic sets which objects
appear and the title vocabulary.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from data_pipeline.world import media
from data_pipeline.world.audience import (COLOURS, HOT_COLOURS, MOTIONS, OBJECTS, TONES, TOPICS, Account,
                                          SceneSpec, comments_for, like_score, memorability, scene_replay)

# Scenes per video, uniform. With 16 image tokens per keyframe, a 7-scene behavior_simulation
# verbalization stays under 512 tokens (the CPU demo's row length); 8 scenes would not. Short videos
# (1-3 scenes, like many ads) matter for learning: in a one-scene video the replay depends on the only
# caption there is, so a model first learns caption -> replay there and then which scene to read in
# longer ones. With 4-7 scenes only, the demo model never started reading the right scene in its
# CPU budget (within-video slope of predicted replay on "fast" ~0 at 500 steps; docs/performance.md).
MIN_SCENES, MAX_SCENES = 1, 7
# The long-video option (`generate(..., scenes=LONG_SCENES)`, `lcbm data generate --scenes 8-24`): enough
# scenes that a k-BFT window of k in {3, 5, 7} masks part of every video, and k = 11 of most (PAPERS.md 4).
# Such a verbalization needs rows longer than 512 tokens (about 100 + 40 per scene with 4 image tokens
# per keyframe: 24 scenes take ~1,070), or fewer image tokens per keyframe.
LONG_SCENES = (8, 24)

TOPIC_WORDS = {"sports": ("match", "game day", "training", "the final"),
               "food": ("recipe", "kitchen", "taste test", "snack time"),
               "travel": ("journey", "road trip", "the trail", "postcard"),
               "music": ("concert", "new song", "rhythm", "the encore")}
MOTION_CAPTION = {"still": "standing still", "slow": "moving slowly", "fast": "moving fast"}
MOTION_ASR = {"still": "here is the {object}", "slow": "the {object} drifts", "fast": "the {object} zooms past"}
TWEET_OPENERS = ("Meet our", "Say hello to the", "New drop: the", "Today we share this", "Look at this",
                 "Weekend mood: the")

START_DATE = np.datetime64("2022-01-01")
DAYS = 1095

Item = tuple[dict[str, Any], bytes, dict[str, Any], list[SceneSpec]]   # (schema row, media bytes, latent, scenes)


def _pick_object(topic: str, rng: np.random.Generator) -> str:
  if rng.uniform() < 0.75:
    return TOPICS[topic][int(rng.integers(2))]
  return OBJECTS[int(rng.integers(len(OBJECTS)))]


def _pick_colour(rng: np.random.Generator) -> str:
  return list(COLOURS)[int(rng.integers(len(COLOURS)))]


def caption(spec: SceneSpec, with_motion: bool = True) -> str:
  """E.g. "a red star moving fast, bright" (short: a video verbalization must fit a 512-token row)."""
  motion = f" {MOTION_CAPTION[spec.motion]}" if with_motion else ""
  return f"{article(spec.colour)} {spec.colour} {spec.obj}{motion}, {'bright' if spec.bright else 'dark'}"


def article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _date(day: int) -> str:
  return str(START_DATE + np.timedelta64(int(day), "D"))


def make_video(i: int, acc: Account, rng: np.random.Generator,
               scenes: tuple[int, int] = (MIN_SCENES, MAX_SCENES)) -> Item:
  """A CBC row (dict), its GIF bytes, latent labels and scenes; `scenes`: the fewest and most scenes
  (uniform; the draw is the same one for any range, so the default leaves every byte as it was)."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  n = int(rng.integers(scenes[0], scenes[1] + 1))
  specs = [SceneSpec(_pick_object(topic, rng), _pick_colour(rng), MOTIONS[int(rng.integers(3))],
                     bool(rng.uniform() < 0.5)) for _ in range(n)]
  replay = [scene_replay(s, k, n, rng) for k, s in enumerate(specs)]
  frames = [media.draw_scene(s, tone, k, rng) for k, s in enumerate(specs)]
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
                            "captions": [caption(s) for s in specs],
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
  gif = media.encode(frames, "GIF", [int(d * 1000) for d in durations])
  latent = {"tone": tone, "topic": topic, "memorability": memorability(specs, rng)}
  return row, gif, latent, specs


def make_post(i: int, rng: np.random.Generator) -> Item:
  """A BLIFT Reddit row, its PNG bytes, latent labels and its one scene."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  spec = SceneSpec(_pick_object(topic, rng), _pick_colour(rng), MOTIONS[int(rng.integers(3))],
                   bool(rng.uniform() < 0.5))
  png = media.encode([media.draw_scene(spec, tone, int(rng.integers(5)), rng)], "PNG")
  score = float(round(np.exp(4.0 + 1.2 * like_score(spec.obj, spec.colour, tone, rng, noise=0.4)
                             + 0.6 * (tone in ("cheerful", "peaceful")))))
  comments = comments_for(tone, spec.obj, spec.colour, int(rng.integers(3, 7)), rng)
  pid = f"p{i:06d}"
  words = TOPIC_WORDS[topic]
  row = {"id": pid, "url": f"media/{pid}.png", "permalink": f"/r/pics/comments/{pid}/",
         "title": f"My {spec.colour} {spec.obj}, {words[int(rng.integers(4))]} edition",
         "subreddit": "pics", "comments": comments, "num_comments": len(comments), "score": score,
         "caption": caption(spec), "created_utc": _date(int(rng.integers(DAYS)))}
  return row, png, {"tone": tone, "topic": topic, "memorability": memorability([spec], rng)}, [spec]


def make_tweet(i: int, acc: Account, day: int, rng: np.random.Generator) -> Item:
  """A tweet row, its JPEG bytes, latent labels and its one scene."""
  tone, topic = TONES[int(rng.integers(4))], list(TOPICS)[int(rng.integers(4))]
  spec = SceneSpec(_pick_object(topic, rng), _pick_colour(rng), "still", bool(rng.uniform() < 0.5))
  jpg = media.encode([media.draw_scene(spec, tone, int(rng.integers(5)), rng)], "JPEG")
  likes = float(round(acc.followers * acc.like_rate * float(np.exp(like_score(spec.obj, spec.colour, tone, rng)))))
  words = TOPIC_WORDS[topic]
  opener = TWEET_OPENERS[int(rng.integers(len(TWEET_OPENERS)))]
  tid = f"t{i:06d}"
  row = {"id": tid, "account": acc.handle, "brand": acc.brand, "followers": acc.followers, "date": _date(day),
         "text": f"{opener} {spec.colour} {spec.obj}! {words[int(rng.integers(4))].capitalize()} with {acc.brand}.",
         "media": [f"media/{tid}.jpg"], "media_caption": caption(spec, with_motion=False),
         "media_keywords": [spec.colour, spec.obj], "likes": likes}
  return row, jpg, {"tone": tone, "topic": topic, "memorability": memorability([spec], rng)}, [spec]
