"""Source readers: each maps one corpus format onto `ContentBehaviorRecord` or `Quarantined`.

Every reader module has `read(path, media_root=None) -> Iterator[ContentBehaviorRecord | Quarantined]`
(lazy; a bad row is quarantined with a reason code, never raised). `read(source, ...)` dispatches by
name; `convert` is the shared row -> record wrapper that turns any conversion error into a reason.
"""
from __future__ import annotations

import collections
import importlib
import os
from typing import Any, Callable, Iterable, Iterator, Mapping

from data_pipeline import records as rec
from data_pipeline import schemas
from lcbm_jax.errors import UserError

SOURCES = {
    "cbc": "data_pipeline.sources.cbc",
    "blift": "data_pipeline.sources.blift",
    "tweets": "data_pipeline.sources.tweets",
    "jsonl": "data_pipeline.sources.jsonl",
    "llava_json": "data_pipeline.sources.llava_json",
    "behavior_world": "data_pipeline.sources.behavior_world",
}


def read(source: str, path: str, media_root: str | None = None
         ) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined]:
  """Reads `path` with the named source's reader. Relative media paths resolve under `media_root`
  (default: the folder holding `path`, or `path` itself when it is a folder)."""
  if source not in SOURCES:
    raise UserError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
  if not os.path.exists(path):
    raise UserError(f"{path} does not exist; pass an existing corpus file or folder")
  return importlib.import_module(SOURCES[source]).read(path, media_root)


def default_media_root(path: str, media_root: str | None) -> str:
  if media_root is not None:
    return media_root
  return rec.ImplicitRoot(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))


def files_in(path: str, suffixes: tuple[str, ...]) -> list[str]:
  """`path` itself, or the files under folder `path` ending in one of `suffixes`, sorted."""
  if not os.path.isdir(path):
    return [path]
  return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(suffixes))


def convert(build: Callable[[], rec.ContentBehaviorRecord], record_id: str, source: str, location: str,
            media_root: str | None, row: Mapping[str, Any] | None = None) -> rec.ContentBehaviorRecord | rec.Quarantined:
  """Checks `row` against the source's table (`schemas.check`), runs the reader's row -> record
  function, then `records.validate`; any failure becomes Quarantined.

  A structural surprise the table does not name still surfaces as TypeError and friends; it is a data
  error, so it becomes `wrong_type` rather than a crash."""
  try:
    if row is not None:
      schemas.check(row, source)
    record = build()
  except rec.RecordError as e:
    return rec.quarantine(e, record_id, source, location)
  except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
    return rec.Quarantined(record_id, source, "wrong_type", f"{type(e).__name__}: {e}"[:300], location)
  return rec.validate(record, media_root, location)


def reason_counts(items: Iterable[Any]) -> collections.Counter:
  """reason -> number of Quarantined among `items` (clean records are not counted)."""
  return collections.Counter(x.reason for x in items if isinstance(x, rec.Quarantined))
