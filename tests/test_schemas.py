"""Every field of every source's table (`data_pipeline.schemas.SCHEMAS`), through the real reader: a
value of the wrong container or scalar type there is `wrong_type`, never coerced; a value of the
right type is not (issue 10, item 3)."""
from __future__ import annotations

import copy
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline import records as rec
from data_pipeline import schemas, sources

# One clean, text-only row per source holding every field of its table (each list with one item).
BASE = {
    "tweets": {"id": "t1", "tweet_id": "t1", "account": "acme", "brand": "Acme", "date": "2024-01-02",
               "text": "hello there", "likes": 3, "followers": 10, "media": [], "media_caption": "a cap",
               "media_verbalization": "a cap", "media_keywords": ["red"]},
    "blift": {"id": "p1", "permalink": "/r/x/1", "url": "", "title": "a post", "subreddit": "pics", "author": "bob",
              "comments": ["nice"], "num_comments": 1, "score": 5, "upvotes": 5, "caption": "a cap",
              "created_utc": "2024-01-02"},
    "jsonl": {"record_id": "g1", "source": "mine", "time": "2024-01-02",
              "content": {"title": "a clip", "description": "d", "text": "t", "subreddit": "s", "keywords": ["k"],
                          "media": [], "scenes": [{"asr": "a", "ocr": "o", "captions": ["c"], "start": 0.0,
                                                   "end": 1.0}],
                          "conversation": [["human", "hi"], ["gpt", "hello"]]},
              "communicator": {"account": "me", "brand": "Me", "followers": 10},
              "behavior": {"likes": 3, "views": 100, "upvotes": 1, "comments": ["cool"], "replay": [10.0]},
              "latent": {}},
    "llava_json": {"id": "l1",
                   "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    "cbc": {"video_id": "v1",
            "asr_raw": [{"start": 0.0, "end": 1.0, "text": "hi", "words": [{"confidence": 0.9, "start": 0.0,
                                                                             "end": 1.0, "text": "hi"}]}],
            "asr_grouped": [["hi"]], "ocr": [["sale"]],
            "blip2_annotations": {"actions": ["walk"], "captions": ["a man"], "objects": ["box"]},
            "replay_graphs": {"original_marker_duration": 1.0, "processed_marker_duration": 1.0, "multiplier": 1.0,
                              "markers": [{"start": 0.0, "end": 1.0, "replay_score": 0.5}]},
            "likes": 3.0, "views": 10.0,
            "metadata": {"title": "a video", "description": "d", "length": 1.0, "date": "2024-01-02"},
            "channel_data": {"channel_id": "c1", "company_name": "Co", "subscribers": 5.0}, "media_path": None},
}
CANDIDATES = ({"k": 1}, [1], "text", 1.5, True)


def _accepts(kind, value) -> bool:
  """What the table's kinds mean, written out independently of `schemas._check`."""
  if isinstance(kind, schemas.Object):
    return isinstance(value, dict) and all(_accepts(k, value.get(n)) for n, k in kind.fields.items()
                                           if value.get(n) is not None)
  if isinstance(kind, schemas.List):
    return isinstance(value, list) and all(v is None or _accepts(kind.item, v) for v in value)
  if isinstance(kind, schemas.OneOrList):
    return _accepts(schemas.List(kind.item), value if isinstance(value, list) else [value])
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  return {"text": isinstance(value, str), "path": isinstance(value, str), "date": isinstance(value, str),
          "id": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)),
          "count": number, "number": number, "epoch_or_date": number or isinstance(value, str),
          "media": isinstance(value, str) or _accepts(schemas.MEDIA_OBJECT, value),
          "text_or_texts": isinstance(value, str) or _accepts(schemas.List("text"), value), "any": True}[kind]


def _set(row, field: str, value):
  parts = re.findall(r"[^.\[\]]+|\[\d+\]", field)
  node = row
  for p in parts[:-1]:
    node = node[int(p[1:-1])] if p.startswith("[") else node[p]
  last = parts[-1]
  if last.startswith("["):
    node[int(last[1:-1])] = value
  else:
    node[last] = value


def _read(source: str, row: dict, tmp_path) -> rec.ContentBehaviorRecord | rec.Quarantined:
  if source == "cbc":
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
  else:
    path = tmp_path / ("train.json" if source == "llava_json" else "train.jsonl")
    path.write_text(json.dumps([row]) if source == "llava_json" else json.dumps(row) + "\n")
  (item,) = list(sources.read(source, str(path), str(tmp_path)))
  return item


@pytest.mark.parametrize("source", sorted(schemas.SCHEMAS))
def test_every_field_of_the_table_refuses_the_wrong_type(source, tmp_path):
  base = BASE[source]
  clean = _read(source, copy.deepcopy(base), tmp_path)
  assert isinstance(clean, rec.ContentBehaviorRecord), clean
  fields = schemas.leaf_fields(schemas.SCHEMAS[source])
  assert len(fields) >= 6
  wrong = 0
  for field, kind in fields:
    for value in CANDIDATES:
      if source == "cbc" and field.startswith(("asr_raw", "replay_graphs.markers")) and isinstance(value, list):
        continue   # parquet cannot hold [1] where its row holds a list of structs and keep the row one type
      row = copy.deepcopy(base)
      _set(row, field, value)
      got = _read(source, row, tmp_path)
      reason = getattr(got, "reason", "clean")
      if _accepts(kind, value):
        assert reason != "wrong_type", (field, value, got)
      else:
        wrong += 1
        assert reason == "wrong_type", (field, value, got)
        assert field.split("[")[0].split(".")[-1] in got.detail, (field, got.detail)
  assert wrong >= 2 * len(fields)


def test_counts_keep_their_range_reasons():
  for value, reason in ((-1, "negative_count"), (2 ** 63, "absurd_count"), (float("nan"), "non_finite")):
    with pytest.raises(rec.RecordError) as e:
      schemas.check({"record_id": "x", "behavior": {"likes": value}}, "jsonl")
    assert e.value.reason == reason
