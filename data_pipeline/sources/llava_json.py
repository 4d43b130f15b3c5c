"""LLaVA conversation reader: instruction data as LLaVA ships it (pretraining captions such as
blip_laion_cc_sbu_558k.json, instruction mixtures such as llava_v1_5_mix665k.json, ShareGPT rows).

A `.json` file is one list of rows, streamed element by element (LLaVA's own trainer reads it whole;
a 665k-row mixture would then sit in memory several times over); a `.jsonl` file is one row per line,
streamed too. A row:

  {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
   "conversations": [{"from": "human", "value": "<image>\\nWhat colour is the bus?"},
                     {"from": "gpt", "value": "The bus is red."}, ...]}

- `image` is a path relative to the media root (LLaVA's `--image_folder`), or a list of paths (one
  `<image>` each, in order); `video` is one multi-frame image file (GIF: one keyframe per scene), its
  one `<image>` (or `<video>`) placeholder standing for all its keyframes. Neither: a text-only row.
- `from` is `human` or `gpt`; `user` and `assistant` (some converted mixtures use them) are read as
  those, in any case. Turns alternate human, gpt, starting with human and ending with gpt.
- A one-image row whose human turns hold no `<image>` gets `"<image>\\n"` before its first human turn,
  as LLaVA's loader does; otherwise the placeholders stay where the row put them and must number
  one per media item (`image_token_mismatch`).
- A repeated `id` is kept, as in every source (built examples are keyed by position).

The record carries the turns in `content.conversation` and the media in `content.media` (a video
also gets one empty `Scene` per keyframe, so templates can pick keyframes); it has no behavior.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import ijson

from data_pipeline import records as rec
from data_pipeline import sources
from data_pipeline.sources.jsonl import json_lines, row_id
from lcbm_jax import paths

SOURCE = "llava_json"
ROLE_NAMES = {"human": "human", "gpt": "gpt", "user": "human", "assistant": "gpt"}


def _media(row: dict[str, Any]) -> tuple[rec.MediaRef, ...]:
  image, video = row.get("image"), row.get("video")
  if image is not None and video is not None:
    raise rec.RecordError("wrong_type", "a row has both image and video; give one")
  if video is not None:
    paths, kind = [rec.as_text(video, "video")], "video"
  elif image is not None:
    paths, kind = (list(image) if isinstance(image, list) else [image]), "image"
  else:
    return ()
  for i, p in enumerate(paths):
    if not rec.as_text(p, f"{kind}[{i}]"):
      raise rec.RecordError("missing_field", f"{kind} is an empty path")
  return tuple(rec.MediaRef(path=p, kind=kind) for p in paths)


def _turns(value: Any) -> list[tuple[str, str]]:
  if value is None:
    raise rec.RecordError("missing_field", "conversations is missing")
  if not isinstance(value, list):
    raise rec.RecordError("wrong_type", f"conversations is {type(value).__name__}, expected a list of turns")
  if not value:
    raise rec.RecordError("missing_field", "conversations is empty")
  turns = []
  for i, t in enumerate(value):
    if not isinstance(t, dict):
      raise rec.RecordError("wrong_type", f"conversations[{i}] is {type(t).__name__}, expected an object")
    who = rec.as_text(t.get("from"), f"conversations[{i}].from", required=True)
    role = ROLE_NAMES.get(who.lower())
    if role is None:
      raise rec.RecordError("bad_role", f"conversations[{i}].from={who!r:.30}; use human or gpt")
    turns.append((role, rec.as_text(t.get("value"), f"conversations[{i}].value", required=True)))
  return turns


def record_from_row(row: dict[str, Any], rid: str, media_root: str) -> rec.ContentBehaviorRecord:
  """One row -> record; `records.validate` then checks the turns, the placeholders and the media."""
  turns = _turns(row.get("conversations"))
  media = _media(row)
  if media and media[0].kind == "video":   # Video-LLaVA's placeholder is <video>; ours is one
    turns = [(r, t.replace("<video>", rec.IMAGE) if r == "human" else t) for r, t in turns]
  if len(media) == 1 and turns[0][0] == "human" and not any(rec.IMAGE in t for r, t in turns if r == "human"):
    turns[0] = ("human", f"{rec.IMAGE}\n{turns[0][1]}")   # LLaVA's fix for rows that omit it
  scenes = ()
  if media and media[0].kind == "video":
    # One scene per keyframe: the templates' keyframe choice reads the scene count. The loaded bytes
    # ride along in the ref, so validation and the builder do not open the file again.
    video, frames = rec.load_media(media[0], media_root)
    media = (video, *media[1:])
    scenes = tuple(rec.Scene() for _ in range(frames))
  return rec.ContentBehaviorRecord(record_id=rid, source=SOURCE,
                                   content=rec.Content(media=media, scenes=scenes, conversation=tuple(turns)))


def _json_list(path: str) -> Iterator[tuple[str, dict[str, Any] | rec.Quarantined]]:
  """(location, row | Quarantined) per element of a JSON list file, streamed (`ijson`): a 1 GB mixture
  is never held whole. A file that is not a list is one Quarantined; a file that breaks at element i
  yields the rows before it and one Quarantined naming where the rest became unreadable."""
  name = os.path.basename(path)
  with paths.open_read(path) as f:
    head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte-order mark, as some editors write
      head = head[3:].lstrip()
    if not head.startswith(b"["):
      yield path, rec.Quarantined(name, SOURCE, "unreadable_file", "not a JSON list of conversation rows "
                                  f"(starts with {head[:20]!r})", path)
      return
    f.seek(0)
    n = 0   # elements read so far
    try:
      for row in ijson.items(f, "item", use_float=True):
        location = f"{path}:{n}"
        if not isinstance(row, dict):
          row = rec.Quarantined(f"{name}:{n}", SOURCE, "malformed_json", f"a JSON {type(row).__name__}, not an object",
                                location)
        n += 1
        yield location, row
    except (ijson.JSONError, UnicodeDecodeError, RecursionError) as e:
      first = str(e).splitlines()[0] if str(e) else ""
      yield path, rec.Quarantined(f"{name}:{n}", SOURCE, "unreadable_file",
                                  f"unreadable from element {n} on: {type(e).__name__}: {first}"[:300], f"{path}:{n}")


def read(path: str, media_root: str | None = None) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Records from a LLaVA `.json` list or `.jsonl` file (or every such file in a folder)."""
  for file in sources.files_in(path, (".json", ".jsonl")):
    root = sources.default_media_root(file, media_root)
    rows = json_lines(file, SOURCE) if file.endswith(".jsonl") else _json_list(file)
    for location, row in rows:
      if isinstance(row, rec.Quarantined):
        yield row
        continue
      rid = row_id(row, "id", fallback=location.rsplit("/", 1)[-1])
      yield sources.convert(lambda: record_from_row(row, rid, root), rid, SOURCE, location, root, row=row)
