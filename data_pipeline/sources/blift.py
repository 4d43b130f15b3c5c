"""BLIFT reader, Reddit part (Behavior-LLaVA): one post per JSON line.

Public fields: `url`, `permalink`, `comments` (list of str), `num_comments`, `subreddit`, `title`.
Optional: `id`, `score` or `upvotes` (the behavior when present), `caption` (a media description),
`created_utc` (ISO date or epoch seconds). `url` is the media: a local path (relative to the media
root) must exist; an http(s) URL resolves to `media/<basename>` under the media root when that file
was downloaded, else the post is kept text-only (the public release ships no media).
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Iterator

from data_pipeline import records as rec
from data_pipeline.sources.jsonl import media_refs, read_rows
from lcbm_jax import paths

SOURCE = "blift"


def _media(url: str, media_root: str) -> tuple[rec.MediaRef, ...]:
  if not url:
    return ()
  if url.startswith(("http://", "https://")):
    local = os.path.join("media", os.path.basename(url.split("?")[0]))
    return media_refs([local]) if paths.exists(paths.join(media_root, local)) else ()
  return media_refs([url], "url")


def _date(value: Any) -> str | None:
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    try:
      return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
      raise rec.RecordError("bad_date", f"created_utc={value!r}") from None
  return rec.as_date(value, "created_utc")


def record_from_row(row: dict[str, Any], rid: str, media_root: str) -> rec.ContentBehaviorRecord:
  title = rec.as_text(row.get("title"), "title", required=True)
  if not title.strip():
    raise rec.RecordError("empty_text", "post title is empty")
  upvotes = row.get("score", row.get("upvotes"))
  caption = rec.as_text(row.get("caption"), "caption")
  rec.as_count(row.get("num_comments"), "num_comments")
  return rec.ContentBehaviorRecord(
      record_id=rid, source=SOURCE,
      content=rec.Content(title=title, subreddit=rec.as_text(row.get("subreddit"), "subreddit"),
                          media=_media(rec.as_text(row.get("url"), "url"), media_root),
                          scenes=(rec.Scene(captions=(caption,)),) if caption else ()),
      communicator=rec.Communicator(account=rec.as_text(row.get("author"), "author")),
      time=_date(row.get("created_utc")),
      behavior=rec.Behavior(upvotes=rec.as_count(upvotes, "score"),
                            comments=rec.as_text_list(row.get("comments"), "comments")))


def read(path: str, media_root: str | None = None) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Records from a BLIFT Reddit JSONL file (or every *.jsonl in a folder)."""
  return read_rows(path, media_root, SOURCE, ("id", "permalink", "url"), record_from_row)
