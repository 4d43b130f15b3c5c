"""Source readers on hand-written fixtures in each public schema, a corrupted corpus, and the generator."""
import json
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import corrupt_corpus
from data_pipeline import records as rec
from data_pipeline import sources, world
from data_pipeline.sources import behavior_world, blift, cbc, jsonl, tweets
from lcbm_jax.errors import UserError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _all(items):
  items = list(items)
  bad = [x for x in items if isinstance(x, rec.Quarantined)]
  assert not bad, bad
  return {r.record_id: r for r in items}


def test_tweets_fixture():
  got = _all(tweets.read(os.path.join(FIXTURES, "tweets.jsonl")))
  assert list(got) == ["tw1", "tw2", "3"]
  assert got["tw1"] == rec.ContentBehaviorRecord(
      "tw1", "tweets",
      rec.Content(text="Our new red ball is here!", media=(rec.MediaRef("media/red_ball.png", "image"),),
                  scenes=(rec.Scene(captions=("a red ball",)),), keywords=("red", "ball")),
      rec.Communicator("acme", "Acme", 5400), "2024-01-02", rec.Behavior(likes=120.0))
  assert got["tw2"].time == "2024-01-03" and got["tw2"].content.media == ()
  assert got["3"].content.scenes[0].captions == ("a blue box",) and got["3"].behavior.likes == 0.0


def test_blift_fixture():
  got = _all(blift.read(os.path.join(FIXTURES, "blift.jsonl")))
  first, second = got.values()
  assert first.record_id == "/r/pics/comments/abc/found_this_ball/"
  assert first.content.title == "Found this ball" and first.content.subreddit == "pics"
  assert first.content.media == (rec.MediaRef("media/red_ball.png", "image"),)
  assert first.behavior == rec.Behavior(upvotes=345.0, comments=("what a lovely ball", "nice colours on this one"))
  # An http URL with no downloaded file keeps the post, text-only; epoch seconds become a date.
  assert second.content.media == () and second.behavior.upvotes is None and second.time == "2023-11-14"


def test_generic_jsonl_fixture_round_trips():
  path = os.path.join(FIXTURES, "generic.jsonl")
  got = _all(jsonl.read(path))
  g1 = got["g1"]
  assert g1.source == "my_corpus" and g1.content.media == (rec.MediaRef("media/clip.gif", "video"),)
  assert g1.behavior.replay == (10.0, 90.0) and g1.communicator.followers == 10
  assert got["g2"].source == "jsonl" and got["g2"].behavior.upvotes == 5.0
  with open(path) as f:
    first = json.loads(f.readline())
  d = g1.to_dict()
  assert d["content"]["scenes"][1]["ocr"] == first["content"]["scenes"][1]["ocr"]
  assert rec.ContentBehaviorRecord.from_dict(d) == g1
  assert rec.ContentBehaviorRecord.from_dict(json.loads(json.dumps(d))) == g1


def _cbc_rows():
  quarter = lambda s, vals: [{"start": s + 0.25 * i, "end": s + 0.25 * (i + 1), "replay_score": v}
                             for i, v in enumerate(vals)]
  return [
      {"video_id": "vid1",
       "asr_raw": [{"start": 0.0, "end": 1.0, "text": "hello", "words": [{"confidence": 0.9, "start": 0.0,
                                                                        "end": 1.0, "text": "hello"}]}],
       "asr_grouped": [["hello", "there"], ["second scene"], ["third"]],
       "ocr": [["SALE"], [], []],
       "blip2_annotations": {"actions": ["waving"], "captions": ["a man waving", "a red car", "a logo"],
                             "objects": ["man", "car", "logo"]},
       # 1 s of quarter markers (max 0.6), one 2 s marker, then 1 s of quarters (max 0.356), a 0.5 s tail.
       "replay_graphs": {"original_marker_duration": 0.25, "processed_marker_duration": 1.0, "multiplier": 1.0,
                         "markers": quarter(0.0, [0.2, 0.6, 0.1, 0.3])
                         + [{"start": 1.0, "end": 3.0, "replay_score": 0.9}]
                         + quarter(3.0, [0.1, 0.356, 0.2, 0.0]) + [{"start": 4.0, "end": 4.5, "replay_score": 0.5}]},
       "likes": 1500.0, "views": 60000.0,
       "metadata": {"title": "Cars", "description": "A car ad", "length": 4.5, "date": "2021-07-08"},
       "channel_data": {"channel_id": "UC123", "company_name": "CarCo", "subscribers": 250000.0}},
      {"video_id": "vid2", "asr_raw": [], "asr_grouped": [["a"], ["b"], ["c"], ["d"]], "ocr": [],
       "blip2_annotations": {"actions": [], "captions": [], "objects": []},
       "replay_graphs": {"original_marker_duration": 1.0, "processed_marker_duration": 1.0, "multiplier": 1.0,
                         "markers": [{"start": 0.0, "end": 1.0, "replay_score": 0.5},
                                     {"start": 1.0, "end": 2.0, "replay_score": 0.25}]},
       "likes": None, "views": 10.0,
       "metadata": {"title": "Short", "description": "", "length": 2.0, "date": None},
       "channel_data": {"channel_id": "UC9", "company_name": "", "subscribers": None}},
  ]


def test_cbc_fixture_parquet(tmp_path):
  path = str(tmp_path / "cbc.parquet")
  pq.write_table(pa.Table.from_pylist(_cbc_rows()), path)   # schema inferred, as an outside writer would
  got = _all(cbc.read(path))
  v1, v2 = got["vid1"], got["vid2"]
  assert v1.behavior.replay == (60.0, 90.0, 50.0)          # tail (0.5 s, 0.5) joins the 1 s segment (0.356)
  assert [(s.start, s.end) for s in v1.content.scenes] == [(0.0, 1.0), (1.0, 3.0), (3.0, 4.5)]
  assert [s.asr for s in v1.content.scenes] == ["hello there", "second scene", "third"]
  assert [s.captions for s in v1.content.scenes] == [("a man waving",), ("a red car",), ("a logo",)]
  assert v1.content.scenes[0].ocr == "SALE" and v1.content.keywords == ("man", "car", "logo")
  assert v1.communicator == rec.Communicator("UC123", "CarCo", 250000)
  assert (v1.time, v1.behavior.likes, v1.behavior.views, v1.content.title) == ("2021-07-08", 1500.0, 60000.0, "Cars")
  # Four ASR groups onto two segments: proportional assignment.
  assert [s.asr for s in v2.content.scenes] == ["a b", "c d"] and v2.behavior.replay == (50.0, 25.0)
  assert v2.time is None and v2.communicator.followers is None


def test_merge_markers():
  m = lambda *triples: [{"start": s, "end": e, "replay_score": v} for s, e, v in triples]
  assert cbc.merge_markers(m((0, 0.5, 0.2), (0.5, 1.0, 0.7), (1.0, 2.5, 0.1))) == [(0, 1.0, 70), (1.0, 2.5, 10)]
  assert cbc.merge_markers(m((0, 0.4, 0.2))) == [(0, 0.4, 20)]                      # a lone short video
  assert cbc.merge_markers(m((0, 2, 35.4), (2, 3, 80.6))) == [(0, 2, 35), (2, 3, 81)]   # already 0-100
  assert cbc.merge_markers(m((1, 2, 0.5), (0, 1, 0.3))) == [(0, 1, 30), (1, 2, 50)]    # sorted by time
  assert cbc.merge_markers([]) == []
  for bad, reason in ((m((0, 1, math.nan)), "non_finite"), (m((0, 1, -0.1)), "out_of_range"),
                      (m((0, 1, 150.0)), "out_of_range"), (m((2, 1, 0.5)), "out_of_range"),
                      ([{"start": 0, "end": 1, "replay_score": "high"}], "wrong_type"),
                      ([{"start": 0, "end": 1}], "missing_field")):
    with pytest.raises(rec.RecordError) as e:
      cbc.merge_markers(bad)
    assert e.value.reason == reason


def test_corrupted_corpus_quarantine_counts(tmp_path):
  corpus = corrupt_corpus.write_corrupted_corpus(str(tmp_path / "corpus"))
  items = [x for source, path in corpus.files for x in sources.read(source, path)]
  assert dict(sources.reason_counts(items)) == corpus.expected
  clean = [x.record_id for x in items if isinstance(x, rec.ContentBehaviorRecord)]
  assert sorted(clean) == sorted(corpus.clean_ids)          # zero clean records lost, none duplicated
  assert len(items) == corpus.total_items
  assert sum(corpus.expected.values()) == 15 and len(corpus.expected) == 12
  for q in items:
    if isinstance(q, rec.Quarantined):
      assert q.reason in rec.REASONS and q.detail and ":" in q.location


def test_generated_corpus_loads_through_public_readers(tmp_path):
  counts = {k: 3 for k in world.SIZES["small"]}
  manifest = world.generate(str(tmp_path), seed=3, counts=counts, progress=False)
  readers = {"cbc": cbc.read, "blift": blift.read, "tweets": tweets.read}
  for entry in manifest["files"]:
    got = _all(readers[entry["source"]](str(tmp_path / entry["path"])))
    assert len(got) == entry["count"] == 3
    for r in got.values():
      assert r.source == entry["source"] and r.latent == {}
      if r.source == "cbc":
        frames = rec.load_media(r.content.media[0], str(tmp_path / "cbc"))[1]
        assert frames == len(r.content.scenes) == len(r.behavior.replay)
        assert world.MIN_SCENES <= frames <= world.MAX_SCENES
  via_world = list(behavior_world.read(str(tmp_path), with_latent=True))
  assert len(via_world) == 21 and all(set(r.latent) >= {"tone", "topic", "memorability"} for r in via_world)
  assert len(list(behavior_world.read(str(tmp_path), split="test_brand"))) == 3


def test_bad_structures_are_quarantined_not_raised(tmp_path):
  lines = [{"id": "a", "account": "x", "text": "ok", "likes": 1, "media": {"path": 3}},
           {"id": "b", "account": ["x"], "text": "ok", "likes": 1},
           {"id": "c", "account": "x", "text": "ok", "likes": 1, "date": "yesterday"},
           {"id": "d", "account": "x", "text": "ok", "likes": True},
           {"id": "e", "account": "x", "text": "ok"},
           {"id": "f", "account": "x", "text": "ok", "likes": 1e13},
           [1, 2, 3]]
  path = tmp_path / "t.jsonl"
  path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "NaN\n")
  got = {x.record_id: x.reason for x in tweets.read(str(path))}
  assert got == {"a": "wrong_type", "b": "wrong_type", "c": "bad_date", "d": "wrong_type", "e": "missing_field",
                 "f": "absurd_count", "t.jsonl:7": "malformed_json", "t.jsonl:8": "malformed_json"}
  cbc_rows = _cbc_rows()
  cbc_rows[0]["metadata"] = None
  cbc_rows[1]["replay_graphs"]["markers"][0]["replay_score"] = -1.0
  pq.write_table(pa.Table.from_pylist(cbc_rows), str(tmp_path / "c.parquet"))
  got = {x.record_id: getattr(x, "reason", "clean") for x in cbc.read(str(tmp_path / "c.parquet"))}
  assert got == {"vid1": "clean", "vid2": "out_of_range"}
  (tmp_path / "not.parquet").write_text("hello")
  (q,) = list(cbc.read(str(tmp_path / "not.parquet")))
  assert q.reason == "unreadable_file"


def test_read_dispatch_errors(tmp_path):
  with pytest.raises(UserError, match="unknown source"):
    sources.read("myspace", str(tmp_path))
  with pytest.raises(UserError, match="does not exist"):
    sources.read("tweets", str(tmp_path / "missing.jsonl"))
  # A folder reads every file of the source's kind in name order.
  for name, tid in (("b.jsonl", "second"), ("a.jsonl", "first")):
    (tmp_path / name).write_text(json.dumps({"id": tid, "account": "x", "text": "hi", "likes": 1}) + "\n")
  (tmp_path / "notes.txt").write_text("not a corpus file")
  assert [r.record_id for r in sources.read("tweets", str(tmp_path))] == ["first", "second"]
