"""Source readers: each maps one corpus format onto `ContentBehaviorRecord` or `Quarantined`.

Every reader module has `read(path, media_root=None) -> Iterator[ContentBehaviorRecord | Quarantined]`
(lazy; a bad row is quarantined with a reason code, never raised). `read(source, ...)` dispatches by
name; `convert` is the shared row -> record wrapper that turns any conversion error into a reason.
Paths may be local or gs:// (`lcbm_jax.paths`).

`parsed(read)` runs a reader with the costly half of each row's check deferred: a row that parses
and fits its schema comes as `Parsed` (its values, text and media not yet validated), so a Beam
build reads a file on one worker and validates its rows on all of them (`Parsed.validate` gives
exactly what the reader would have yielded).
"""
from __future__ import annotations

import collections
import contextvars
import dataclasses
import importlib
from typing import Any, Callable, Iterable, Iterator, Mapping

from data_pipeline import records as rec
from data_pipeline import schemas
from lcbm_jax import paths
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
  if not paths.exists(path):
    raise UserError(f"{path} does not exist; pass an existing corpus file or folder")
  return importlib.import_module(SOURCES[source]).read(path, media_root)


def default_media_root(path: str, media_root: str | None) -> str:
  if media_root is not None:
    return media_root
  return rec.ImplicitRoot(path if paths.isdir(path) else paths.dirname(paths.abspath(path)))


def files_in(path: str, suffixes: tuple[str, ...]) -> list[str]:
  """`path` itself, or the files under folder `path` ending in one of `suffixes`, sorted."""
  if not paths.isdir(path):
    return [path]
  return sorted(paths.join(path, f) for f in paths.listdir(path) if f.endswith(suffixes))


@dataclasses.dataclass(frozen=True)
class Parsed:
  """A row that parsed and fits its schema; `validate()` checks the rest (values, text, media)."""
  record: rec.ContentBehaviorRecord
  media_root: Any
  location: str

  def validate(self) -> rec.ContentBehaviorRecord | rec.Quarantined:
    return rec.validate(self.record, self.media_root, self.location)


# Set only by `parsed`, around each step of a reader: `convert` then stops before `records.validate`.
_DEFER_VALIDATION = contextvars.ContextVar("defer_validation", default=False)
_END = object()


def convert(build: Callable[[], rec.ContentBehaviorRecord], record_id: str, source: str, location: str,
            media_root: str | None, row: Mapping[str, Any] | None = None) -> rec.ContentBehaviorRecord | rec.Quarantined:
  """Checks `row` against the source's table (`schemas.check`), runs the reader's row -> record
  function, then `records.validate` (under `parsed`: returns `Parsed` instead); any failure becomes
  Quarantined.

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
  if _DEFER_VALIDATION.get():
    return Parsed(record, media_root, location)
  return rec.validate(record, media_root, location)


def parsed(read: Callable[[], Iterable[Any]]) -> Iterator[rec.ContentBehaviorRecord | rec.Quarantined | Parsed]:
  """The items of `read()` (a reader call), with `convert`'s validation deferred (`Parsed`). The
  deferral holds only while the reader computes an item, never while the caller handles one."""
  it = iter(read())
  while True:
    token = _DEFER_VALIDATION.set(True)
    try:
      item = next(it, _END)
    finally:
      _DEFER_VALIDATION.reset(token)
    if item is _END:
      return
    yield item


def reason_counts(items: Iterable[Any]) -> collections.Counter:
  """reason -> number of Quarantined among `items` (clean records are not counted)."""
  return collections.Counter(x.reason for x in items if isinstance(x, rec.Quarantined))
