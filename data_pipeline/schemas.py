"""Every source's row schema as data: which fields a row may hold, of which type and range.

`check(row, source)` runs before a reader maps a row to a record (`sources.convert`): a value of the
wrong type anywhere in the row, nested fields and list items included (a dict or a string where a
list belongs, a list where an object belongs, a number where text belongs), is
`RecordError("wrong_type")` naming the field, never coerced. A count is checked for its range here
too (`records.as_count`: negative_count, absurd_count, non_finite). Fields not in a table are
ignored (corpora carry extra columns); absent and null fields are the readers' business (they know
which are required, and which alternatives stand in for one another, e.g. `id` / `tweet_id`).

The kinds:
  text    a string                      id     a string or an integer
  count   a number >= 0 (records.as_count)      number  an int or float (not a bool)
  date    a string (records.as_date parses it)  epoch_or_date  a number (Unix seconds) or a string
  path    a string                      media  a path, or an object {path, kind}
  text_or_texts  a string, or a list of strings (CBC's per-scene groups)
  any     anything (e.g. generator-only labels)
`Object(...)` is a JSON object (dict) of fields, `List(kind)` a list of that kind, `OneOrList(kind)`
one item or a list of them (LLaVA's `image`, a media list that may be a bare path).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from data_pipeline import records as rec


@dataclasses.dataclass(frozen=True)
class Object:
  fields: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class List:
  item: Any


@dataclasses.dataclass(frozen=True)
class OneOrList:
  item: Any


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


# kind -> (does a value have the kind's type, what the kind is called in an error)
_SCALARS = {
    "text": (lambda v: isinstance(v, str), "text"),
    "id": (lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)), "text or an integer"),
    "count": (_is_number, "a number"),
    "number": (_is_number, "a number"),
    "date": (lambda v: isinstance(v, str), "an ISO date string"),
    "epoch_or_date": (lambda v: isinstance(v, str) or _is_number(v), "a date string or Unix seconds"),
    "path": (lambda v: isinstance(v, str), "a path string"),
    "any": (lambda v: True, "anything"),
}
MEDIA_OBJECT = Object({"path": "path", "kind": "text"})
TEXTS = List("text")

SCHEMAS: dict[str, Object] = {
    "tweets": Object({
        "id": "id", "tweet_id": "id", "account": "text", "brand": "text", "date": "date", "text": "text",
        "likes": "count", "followers": "count", "media": OneOrList("media"), "media_caption": "text",
        "media_verbalization": "text", "media_keywords": TEXTS}),
    "blift": Object({
        "id": "id", "permalink": "text", "url": "text", "title": "text", "subreddit": "text", "author": "text",
        "comments": TEXTS, "num_comments": "count", "score": "count", "upvotes": "count", "caption": "text",
        "created_utc": "epoch_or_date"}),
    "jsonl": Object({
        "record_id": "id", "source": "text", "time": "date",
        "content": Object({
            "title": "text", "description": "text", "text": "text", "subreddit": "text", "keywords": TEXTS,
            "media": OneOrList("media"),
            "scenes": List(Object({"asr": "text", "ocr": "text", "captions": TEXTS, "start": "number",
                                   "end": "number"})),
            "conversation": List(List("text"))}),
        "communicator": Object({"account": "text", "brand": "text", "followers": "count"}),
        "behavior": Object({"likes": "count", "views": "count", "upvotes": "count", "comments": TEXTS,
                            "replay": List("number")}),
        "latent": Object({})}),
    "llava_json": Object({
        "id": "id", "image": OneOrList("path"), "video": "path",
        "conversations": List(Object({"from": "text", "value": "text"}))}),
    "cbc": Object({
        "video_id": "text",
        "asr_raw": List(Object({"start": "number", "end": "number", "text": "text", "words": List(Object({
            "confidence": "number", "start": "number", "end": "number", "text": "text"}))})),
        "asr_grouped": List("text_or_texts"), "ocr": List("text_or_texts"),
        "blip2_annotations": Object({"actions": List("text_or_texts"), "captions": List("text_or_texts"),
                                     "objects": List("text_or_texts")}),
        "replay_graphs": Object({
            "original_marker_duration": "number", "processed_marker_duration": "number", "multiplier": "number",
            "markers": List(Object({"start": "number", "end": "number", "replay_score": "number"}))}),
        "likes": "count", "views": "count",
        "metadata": Object({"title": "text", "description": "text", "length": "number", "date": "date"}),
        "channel_data": Object({"channel_id": "text", "company_name": "text", "subscribers": "count"}),
        "media_path": "path"}),
}


def check(row: Mapping[str, Any], source: str) -> None:
  """RecordError (wrong_type, or a count's range reason) for the first field of `row` that does not
  fit `SCHEMAS[source]`; a source without a table is not checked."""
  schema = SCHEMAS.get(source)
  if schema is not None:
    _check(row, schema, "")


def _type_name(v: Any) -> str:
  return {dict: "an object", list: "a list", str: "text", bool: "a boolean"}.get(type(v), type(v).__name__)


def _wrong(field: str, value: Any, expected: str) -> rec.RecordError:
  return rec.RecordError("wrong_type", f"{field or 'the row'} is {_type_name(value)} ({value!r:.40}), expected {expected}")


def _check(value: Any, kind: Any, field: str) -> None:
  if value is None:   # absent: whether that is allowed is the reader's business
    return
  if isinstance(kind, Object):
    if not isinstance(value, dict):
      raise _wrong(field, value, "an object")
    for name, sub in kind.fields.items():
      _check(value.get(name), sub, f"{field}.{name}" if field else name)
  elif isinstance(kind, List):
    if not isinstance(value, list):
      raise _wrong(field, value, "a list")
    for i, item in enumerate(value):
      _check(item, kind.item, f"{field}[{i}]")
  elif isinstance(kind, OneOrList):
    for i, item in enumerate(value if isinstance(value, list) else [value]):
      _check(item, kind.item, f"{field}[{i}]" if isinstance(value, list) else field)
  elif kind == "media":
    if not isinstance(value, str):
      _check(value, MEDIA_OBJECT, field)
  elif kind == "text_or_texts":
    if not isinstance(value, str):
      _check(value, TEXTS, field)
  else:
    fits, expected = _SCALARS[kind]
    if not fits(value):
      raise _wrong(field, value, expected)
    if kind == "count":
      rec.as_count(value, field)


def leaf_fields(kind: Any = None, field: str = "") -> list[tuple[str, Any]]:
  """(dotted field path, kind) of every field a table names, containers included (for tests and docs);
  list items are `field[0]`."""
  out = [(field, kind)] if field else []
  if isinstance(kind, Object):
    for name, sub in kind.fields.items():
      out += leaf_fields(sub, f"{field}.{name}" if field else name)
  elif isinstance(kind, (List, OneOrList)):
    out += leaf_fields(kind.item, f"{field}[0]") if isinstance(kind.item, (Object, List, OneOrList)) else []
  return out
