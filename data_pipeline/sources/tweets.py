"""Tweets reader (the LCBM Twitter format): one JSON object per line.

Fields: `id` (or `tweet_id`), `account`, `brand`, `date`, `text`, `likes` (required), `followers`,
`media` (list of image paths relative to the media root), `media_caption` (or `media_verbalization`)
and `media_keywords` (optional).
"""
from __future__ import annotations

from typing import Any, Iterator

from data_pipeline import records as rec
from data_pipeline.sources.jsonl import media_refs, read_rows

SOURCE = "tweets"


def record_from_row(row: dict[str, Any], rid: str) -> rec.ContentBehaviorRecord:
  text = rec.as_text(row.get("text"), "text", required=True)
  if not text.strip():
    raise rec.RecordError("empty_text", "tweet text is empty")
  account = rec.as_text(row.get("account"), "account", required=True)
  caption = rec.as_text(row.get("media_caption", row.get("media_verbalization")), "media_caption")
  followers = rec.as_count(row.get("followers"), "followers")
  media = media_refs(row.get("media"))
  return rec.ContentBehaviorRecord(
      record_id=rid, source=SOURCE,
      content=rec.Content(text=text, media=media, scenes=(rec.Scene(captions=(caption,)),) if caption else (),
                          keywords=rec.as_text_list(row.get("media_keywords"), "media_keywords")),
      communicator=rec.Communicator(account=account, brand=rec.as_text(row.get("brand"), "brand"),
                                    followers=None if followers is None else int(followers)),
      time=rec.as_date(row.get("date"), "date"),
      behavior=rec.Behavior(likes=rec.as_count(row.get("likes"), "likes", required=True)))


def read(path: str, media_root: str | None = None) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Records from a tweets JSONL file (or every *.jsonl in a folder)."""
  return read_rows(path, media_root, SOURCE, ("id", "tweet_id"), lambda row, rid, root: record_from_row(row, rid))
