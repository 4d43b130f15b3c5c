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


# ---------------------------------------------------------------------------------------------
# Hostile input on top (issue 10): paths that leave the media root, files that are not regular,
# duplicates and leaks, nested wrong types, enormous lines, through every source.

CANARY_MARKER = b"lcbm-canary-7f3a9c1e5b"   # in a valid image outside the root: must never reach a shard


@dataclasses.dataclass(frozen=True)
class HostileCorpus:
  root: str                          # the generated (and corrupted) corpus
  outside: str                       # a directory beside it holding the canary
  builds: tuple[tuple[str, str, str], ...]   # (source, --input, --media-root) to build, in order
  expected: dict[str, int]           # reason -> quarantined items over all builds
  clean_ids: frozenset[str]          # record ids that must be built exactly once


def _canary(path: str) -> None:
  from PIL import PngImagePlugin
  info = PngImagePlugin.PngInfo()
  info.add_text("marker", CANARY_MARKER.decode())
  Image.new("RGB", (13, 7), (200, 10, 90)).save(path, pnginfo=info)


def _hostile_paths(media_root: str, sub: str, outside: str) -> list[tuple[str, str]]:
  """(path as a row writes it, reason) for each way a media path can be hostile, for rows whose media
  resolve under `media_root`; creates the files in `media_root/sub`."""
  media_dir = os.path.join(media_root, sub)
  os.makedirs(media_dir, exist_ok=True)
  canary = os.path.join(outside, "canary.png")
  os.symlink(canary, os.path.join(media_dir, "link_out.png"))
  os.makedirs(os.path.join(media_dir, "a_dir.png"))
  os.mkfifo(os.path.join(media_dir, "fifo.png"))
  return [(os.path.relpath(canary, media_root), "media_outside_root"), (canary, "media_outside_root"),
          (f"{sub}/link_out.png", "media_outside_root"), ("/etc/passwd", "media_outside_root"),
          ("/dev/zero", "media_outside_root"), (f"{sub}/a_dir.png", "not_regular_file"),
          (f"{sub}/fifo.png", "not_regular_file")]


def _append_lines(path: str, rows: list[dict], huge: bool = True) -> None:
  from data_pipeline.sources import jsonl
  with open(path, "ab") as f:
    for r in rows:
      f.write(json.dumps(r).encode() + b"\n")
    if huge:   # one line longer than any row: skipped in bounded pieces
      f.write(b'{"id": "huge", "text": "' + b"x" * (jsonl.MAX_LINE_BYTES + 1024) + b'"}\n')


def write_hostile_corpus(out_dir: str) -> HostileCorpus:
  base = write_corrupted_corpus(os.path.join(out_dir, "corpus"))
  root, outside = base.root, os.path.join(out_dir, "outside")
  os.makedirs(outside)
  _canary(os.path.join(outside, "canary.png"))
  expected = collections.Counter(base.expected)
  clean = set(base.clean_ids)

  def count(paths, extra):
    for _, reason in paths:
      expected[reason] += 1
    for reason in extra:
      expected[reason] += 1

  # tweets and blift (JSONL, media relative to the file's folder)
  for source in ("tweets", "blift"):
    path = os.path.join(root, source, "train.jsonl")
    with open(path, "rb") as f:
      parsed = [json.loads(line) for line in f if _is_json(line)]
    template = next(r for r in parsed if str(r.get("id")) in clean)
    hostile = _hostile_paths(os.path.join(root, source), "media", outside)
    if source == "tweets":
      rows = [{**template, "id": f"h-tw-{i}", "media": [p]} for i, (p, _) in enumerate(hostile)]
      rows += [{**template, "id": "h-tw-nested", "media_keywords": {"a": "b"}}]        # a dict where a list belongs
    else:
      rows = [{**template, "id": f"h-bl-{i}", "url": p} for i, (p, _) in enumerate(hostile)]
      rows += [{**template, "id": "h-bl-nested", "comments": "one comment, not a list"}]   # text where a list belongs
    rows.append(dict(template))   # a clean row again, later in the same split: the first one is built
    _append_lines(path, rows)
    count(hostile, ["wrong_type", "duplicate_id", "huge_line"])

  # cbc (parquet): hostile media_path values and a repeated video_id, on copies of a clean row
  cbc = os.path.join(root, "cbc", "train.parquet")
  videos = pq.read_table(cbc).to_pylist()
  template = next(v for v in videos if v["video_id"] in clean)
  hostile = _hostile_paths(os.path.join(root, "cbc"), "media", outside)
  videos += [{**template, "video_id": f"h-cbc-{i}", "media_path": p} for i, (p, _) in enumerate(hostile)]
  videos.append(dict(template))   # the same video_id again
  world.write_cbc_parquet(videos, cbc)
  count(hostile, ["duplicate_id"])

  # llava_json (a .json list, media relative to the corpus root)
  image = next(os.path.join("blift", "media", n) for n in sorted(os.listdir(os.path.join(root, "blift", "media")))
               if n.endswith(".png") and not os.path.islink(os.path.join(root, "blift", "media", n))
               and os.path.isfile(os.path.join(root, "blift", "media", n))
               and _decodes(os.path.join(root, "blift", "media", n)))
  turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A thing."}]
  hostile = _hostile_paths(root, "llava_media", outside)
  rows = [{"id": "l-clean-0", "image": image, "conversations": turns}, {"id": "l-clean-1", "conversations": [
      {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]}]
  rows += [{"id": f"h-ll-{i}", "image": p, "conversations": turns} for i, (p, _) in enumerate(hostile)]
  rows += [{"id": "h-ll-nested", "image": image, "conversations": {"from": "human", "value": "x"}},
           {"id": "l-clean-0", "image": image, "conversations": turns}]
  llava = os.path.join(root, "llava", "train.json")
  os.makedirs(os.path.dirname(llava), exist_ok=True)
  with open(llava, "w") as f:
    json.dump(rows, f)
  clean |= {"l-clean-0", "l-clean-1"}
  count(hostile, ["wrong_type", "duplicate_id"])

  # jsonl (the generic schema), with a test split that shares an id with train (leakage)
  jdir = os.path.join(root, "jsonl")
  os.makedirs(os.path.join(jdir, "media"))
  _copy(os.path.join(root, image), os.path.join(jdir, "media", "ok.png"))
  def row(rid, media):
    return {"record_id": rid, "content": {"title": f"post {rid}", "media": media}, "behavior": {"likes": 2}}
  with open(os.path.join(jdir, "test.jsonl"), "w") as f:
    f.write(json.dumps(row("j-leak", ["media/ok.png"])) + "\n")
  hostile = _hostile_paths(jdir, "media", outside)
  rows = [row("j-clean", ["media/ok.png"]), row("j-leak", ["media/ok.png"]), row("j-clean", ["media/ok.png"])]
  rows += [row(f"h-j-{i}", [p]) for i, (p, _) in enumerate(hostile)]
  rows.append({**row("h-j-nested", []), "behavior": {"comments": {"top": "so cool"}}})
  open(os.path.join(jdir, "train.jsonl"), "w").close()
  _append_lines(os.path.join(jdir, "train.jsonl"), rows)
  clean |= {"j-clean", "j-leak"}
  count(hostile, ["duplicate_id", "duplicate_id", "wrong_type", "huge_line"])

  builds = (("behavior_world", root, ""), ("llava_json", llava, root), ("jsonl", jdir, jdir))
  return HostileCorpus(root=root, outside=outside, builds=builds, expected=dict(expected), clean_ids=frozenset(clean))


def _is_json(line: bytes) -> bool:
  try:
    return isinstance(json.loads(line), dict)
  except ValueError:
    return False


def _decodes(path: str) -> bool:
  try:
    with Image.open(path) as img:
      img.load()
    return img.mode in ("RGB", "L", "RGBA", "P")
  except Exception:
    return False


def _copy(src: str, dst: str) -> None:
  with open(src, "rb") as f, open(dst, "wb") as g:
    g.write(f.read())
