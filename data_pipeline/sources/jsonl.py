"""Generic JSONL reader: one `ContentBehaviorRecord.to_dict()` object per line (schema in the README's data section).

Also home of `json_lines`, the line reader every JSONL source shares: it reads bytes, so invalid
UTF-8 and malformed JSON become reasons instead of exceptions.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator

from data_pipeline import records as rec
from data_pipeline import sources
from lcbm_jax import paths

SOURCE = "jsonl"


# A row is text and counts (media are files): a longer line is a broken file, not data, and reading
# it whole could exhaust memory.
MAX_LINE_BYTES = 16 << 20


def _lines(f) -> Iterator[bytes | None]:
  """The lines of a binary file, each at most MAX_LINE_BYTES; None for a longer one, skipped in
  bounded pieces."""
  while raw := f.readline(MAX_LINE_BYTES + 1):
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
      while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
        pass
      yield None
    else:
      yield raw


def json_lines(path: str, source: str) -> Iterator[tuple[str, dict[str, Any] | rec.Quarantined]]:
  """(location, row dict | Quarantined) per non-blank line of `path`."""
  name = os.path.basename(path)
  with paths.open_read(path) as f:
    for lineno, raw in enumerate(_lines(f), 1):
      location = f"{path}:{lineno}"
      fallback_id = f"{name}:{lineno}"
      if raw is None:
        yield location, rec.Quarantined(fallback_id, source, "huge_line",
                                        f"a line over {MAX_LINE_BYTES} bytes", location)
        continue
      if not raw.strip():
        continue
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        yield location, rec.Quarantined(fallback_id, source, "invalid_utf8", str(e)[:200], location)
        continue
      try:
        row = json.loads(text)
      except (json.JSONDecodeError, RecursionError) as e:
        yield location, rec.Quarantined(fallback_id, source, "malformed_json", str(e)[:200], location)
        continue
      if not isinstance(row, dict):
        yield location, rec.Quarantined(fallback_id, source, "malformed_json",
                                        f"a JSON {type(row).__name__}, not an object", location)
        continue
      yield location, row


def row_id(row: dict[str, Any], *keys: str, fallback: str) -> str:
  """The first present id field as text (numbers allowed), else `fallback` (file:line)."""
  for k in keys:
    v = row.get(k)
    if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
      return str(v)
  return fallback


def media_refs(value: Any, field: str = "media") -> tuple[rec.MediaRef, ...]:
  """A media list: paths, or {"path", "kind"} objects; a bare string is one path.
  A `.gif` path defaults to kind "video" (one keyframe per scene)."""
  if value is None:
    return ()
  items = [value] if isinstance(value, (str, dict)) else value
  if not isinstance(items, list):
    raise rec.RecordError("wrong_type", f"{field} is {type(value).__name__}, expected a list")
  out = []
  for i, m in enumerate(items):
    if isinstance(m, str):
      path, kind = m, ("video" if m.lower().endswith(".gif") else "image")
    elif isinstance(m, dict):
      path = rec.as_text(m.get("path"), f"{field}[{i}].path", required=True)
      kind = rec.as_text(m.get("kind"), f"{field}[{i}].kind") or "image"
    else:
      raise rec.RecordError("wrong_type", f"{field}[{i}] is {type(m).__name__}, expected a path")
    rec.as_text(path, f"{field}[{i}]")
    if not path:
      raise rec.RecordError("missing_field", f"{field}[{i}] is an empty path")
    out.append(rec.MediaRef(path=path, kind=kind))
  return tuple(out)


def _number(value: Any, field: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise rec.RecordError("wrong_type", f"{field}={value!r:.40} is not a number")
  return float(value)


def _conversation(value: Any) -> tuple[tuple[str, str], ...]:
  """`content.conversation`: [[role, text], ...] as `to_dict` writes it (checked by `records.validate`)."""
  if value is None:
    return ()
  if not isinstance(value, list):
    raise rec.RecordError("wrong_type", f"content.conversation is {type(value).__name__}, expected a list")
  turns = []
  for i, turn in enumerate(value):
    if not (isinstance(turn, list) and len(turn) == 2):
      raise rec.RecordError("wrong_type", f"content.conversation[{i}] is not a [role, text] pair")
    turns.append((rec.as_text(turn[0], f"conversation[{i}].role", required=True),
                  rec.as_text(turn[1], f"conversation[{i}].text", required=True)))
  return tuple(turns)


def record_from_row(row: dict[str, Any]) -> rec.ContentBehaviorRecord:
  """Generic schema row -> record; raises RecordError on a bad field."""
  rid = rec.as_text(row.get("record_id"), "record_id", required=True)
  c = rec.as_mapping(row.get("content"), "content")
  scenes = []
  for i, s in enumerate(c.get("scenes") or []):
    s = rec.as_mapping(s, f"content.scenes[{i}]")
    scenes.append(rec.Scene(asr=rec.as_text(s.get("asr"), "asr"), ocr=rec.as_text(s.get("ocr"), "ocr"),
                            captions=rec.as_text_list(s.get("captions"), "captions"),
                            start=_number(s.get("start", 0.0), "start"), end=_number(s.get("end", 0.0), "end")))
  content = rec.Content(
      title=rec.as_text(c.get("title"), "title"), description=rec.as_text(c.get("description"), "description"),
      text=rec.as_text(c.get("text"), "text"), media=media_refs(c.get("media"), "content.media"),
      scenes=tuple(scenes), keywords=rec.as_text_list(c.get("keywords"), "keywords"),
      subreddit=rec.as_text(c.get("subreddit"), "subreddit"), conversation=_conversation(c.get("conversation")))
  w = rec.as_mapping(row.get("communicator"), "communicator")
  followers = rec.as_count(w.get("followers"), "followers")
  who = rec.Communicator(account=rec.as_text(w.get("account"), "account"), brand=rec.as_text(w.get("brand"), "brand"),
                         followers=None if followers is None else int(followers))
  b = rec.as_mapping(row.get("behavior"), "behavior")
  replay = b.get("replay")
  if replay is not None:
    if not isinstance(replay, list):
      raise rec.RecordError("wrong_type", "behavior.replay is not a list")
    replay = tuple(_number(v, f"replay[{i}]") for i, v in enumerate(replay))
  behavior = rec.Behavior(likes=rec.as_count(b.get("likes"), "likes"), views=rec.as_count(b.get("views"), "views"),
                          upvotes=rec.as_count(b.get("upvotes"), "upvotes"),
                          comments=rec.as_text_list(b.get("comments"), "comments"), replay=replay)
  return rec.ContentBehaviorRecord(record_id=rid, source=rec.as_text(row.get("source"), "source") or SOURCE,
                                   content=content, communicator=who, time=rec.as_date(row.get("time"), "time"),
                                   behavior=behavior)


def read_rows(path: str, media_root: str | None, source: str, id_keys: tuple[str, ...],
              build: Callable[[dict[str, Any], str, str], rec.ContentBehaviorRecord]
              ) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """The read loop of every JSONL source: each line of each *.jsonl file becomes a record or a
  Quarantined. `build(row, record_id, media_root)` maps one parsed row; its RecordErrors quarantine it."""
  for file in sources.files_in(path, (".jsonl",)):
    root = sources.default_media_root(file, media_root)
    for location, row in json_lines(file, source):
      if isinstance(row, rec.Quarantined):
        yield row
        continue
      rid = row_id(row, *id_keys, fallback=location.rsplit("/", 1)[-1])
      yield sources.convert(lambda: build(row, rid, root), rid, source, location, root, row=row)


def read(path: str, media_root: str | None = None) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Records from a generic JSONL file (or every *.jsonl in a folder)."""
  return read_rows(path, media_root, SOURCE, ("record_id",), lambda row, rid, root: record_from_row(row))
