"""Test helper: a tiny generated corpus with one of each kind of damage injected, and what to expect.

`write_corrupted_corpus(out_dir)` generates a few records of every source with the embedded
generator, then damages some: truncated PNG, zero-byte image, CMYK and 16-bit images, an image too
large in pixels, a missing image, a malformed JSON line, invalid UTF-8, a string where a number
belongs, negative likes, 2**63 views, NaN views, empty text, a video short of keyframes. Bad *lines* are added (not replacing
good rows), damaged *media/values* turn an existing record bad. The result says, per reason, how many
quarantines the readers must report, and which record ids must come through clean. test_sources.py
checks it through the readers; the Grain pipeline tests reuse it with 0 and 2 workers.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import math
import os

import pyarrow.parquet as pq
from PIL import Image

from data_pipeline import world
from data_pipeline.sources import behavior_world

COUNTS = {("cbc", "train"): 6, ("cbc", "test"): 0, ("blift", "train"): 6, ("blift", "test"): 0,
          ("tweets", "train"): 12, ("tweets", "test_time"): 0, ("tweets", "test_brand"): 0}


@dataclasses.dataclass(frozen=True)
class CorruptedCorpus:
  root: str                                  # the corpus directory (manifest.json, per-source folders)
  files: tuple[tuple[str, str], ...]         # (source, path) of every file to read; media next to each file
  expected: dict[str, int]                   # reason -> number of quarantined items
  clean_ids: frozenset[str]                  # record ids that must come through clean
  total_items: int                           # clean + quarantined items the readers yield


def _rewrite_jsonl(path: str, edit) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  edit(rows)
  with open(path, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r, sort_keys=True) + "\n")
  return rows


def _save(path: str, img: Image.Image, fmt: str) -> None:
  buf = io.BytesIO()
  img.save(buf, fmt)
  with open(path, "wb") as f:
    f.write(buf.getvalue())


def _frames(out_dir: str, video: dict) -> int:
  with Image.open(os.path.join(out_dir, "cbc", video["media_path"])) as img:
    return img.n_frames


def write_corrupted_corpus(out_dir: str, seed: int = 0) -> CorruptedCorpus:
  world.generate(out_dir, seed=seed, counts=COUNTS, progress=False)
  expected: collections.Counter = collections.Counter()
  bad_ids: set[str] = set()

  # Tweets: value damage on rows 0-3, media damage on rows 4-7, extra bad lines appended.
  tweets = os.path.join(out_dir, "tweets", "train.jsonl")
  def edit_tweets(rows):
    rows[0]["likes"] = "lots"; expected["wrong_type"] += 1
    rows[1]["likes"] = -5; expected["negative_count"] += 1
    rows[2]["likes"] = 2 ** 63; expected["absurd_count"] += 1
    rows[3]["text"] = "   "; expected["empty_text"] += 1
    bad_ids.update(r["id"] for r in rows[:8])
  rows = _rewrite_jsonl(tweets, edit_tweets)
  media = lambda r: os.path.join(out_dir, "tweets", r["media"][0])
  open(media(rows[4]), "wb").close(); expected["corrupt_media"] += 1                      # zero bytes
  _save(media(rows[5]), Image.new("CMYK", (32, 32), (10, 20, 30, 0)), "JPEG"); expected["unsupported_media"] += 1
  os.remove(media(rows[6])); expected["missing_media"] += 1
  _save(media(rows[7]), Image.new("L", (4100, 4100), 128), "PNG"); expected["huge_media"] += 1
  with open(tweets, "ab") as f:
    f.write(b'{"id": "broken", "likes": 3, "text": "unterminated\n'); expected["malformed_json"] += 1
    f.write('{"id": "bad-utf8", "text": "caf\u00e9"}\n'.encode("utf-8").replace(b"\xc3\xa9", b"\xff\xfe"))
    expected["invalid_utf8"] += 1

  # BLIFT: a truncated PNG and a 16-bit PNG.
  blift = os.path.join(out_dir, "blift", "train.jsonl")
  with open(blift, encoding="utf-8") as f:
    posts = [json.loads(line) for line in f]
  png = os.path.join(out_dir, "blift", posts[0]["url"])
  with open(png, "rb") as f:
    data = f.read()
  with open(png, "wb") as f:
    f.write(data[: len(data) // 2]); expected["corrupt_media"] += 1
  _save(os.path.join(out_dir, "blift", posts[1]["url"]), Image.new("I;16", (32, 32), 300), "PNG")
  expected["unsupported_media"] += 1
  bad_ids.update(p["id"] for p in posts[:2])

  # CBC: 2**63 views and NaN views (the parquet column is float64, as in the public schema).
  cbc = os.path.join(out_dir, "cbc", "train.parquet")
  videos = pq.read_table(cbc).to_pylist()
  videos[0]["views"] = float(2 ** 63); expected["absurd_count"] += 1
  videos[1]["views"] = math.nan; expected["non_finite"] += 1
  bad_ids.update(v["video_id"] for v in videos[:2])
  # A video with one keyframe fewer than its scenes (caught at build, not in a training worker).
  short = next(v for v in videos[2:] if _frames(out_dir, v) > 1)
  gif = os.path.join(out_dir, "cbc", short["media_path"])
  with Image.open(gif) as img:
    frames = []
    for i in range(img.n_frames - 1):
      img.seek(i)
      frames.append(img.convert("RGB"))
  frames[0].save(gif, save_all=True, append_images=frames[1:])
  expected["missing_keyframes"] += 1
  bad_ids.add(short["video_id"])
  world.write_cbc_parquet(videos, cbc)

  all_ids = {v["video_id"] for v in videos} | {p["id"] for p in posts} | {r["id"] for r in rows}
  files = tuple((e["source"], os.path.join(out_dir, e["path"])) for e in behavior_world.load_manifest(out_dir)["files"]
                if e["count"])
  clean = frozenset(all_ids - bad_ids)
  return CorruptedCorpus(root=out_dir, files=files, expected=dict(expected), clean_ids=clean,
                         total_items=len(clean) + sum(expected.values()))
