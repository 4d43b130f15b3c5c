"""TFDS builders: ArrayRecord without TensorFlow, exact record/media round trip, quarantine reports."""
import json
import os
import sys

import pytest
from array_record.python import array_record_data_source

import corrupt_corpus
from data_pipeline import records as records_lib
from data_pipeline import commands, sources, world
from data_pipeline.tfds_builders import builder as builder_lib
from lcbm_jax import cli
from lcbm_jax.errors import UserError
from pipeline_helpers import TINY_COUNTS


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  gen = str(tmp_path_factory.mktemp("gen"))
  world.generate(gen, seed=1, counts=TINY_COUNTS, progress=False)
  return gen


def test_build_writes_array_record_readable_without_tensorflow(generated, tmp_path):
  out = str(tmp_path / "built")
  reports = commands.build_corpus("cbc", os.path.join(generated, "cbc"), out)
  assert "tensorflow" not in sys.modules  # TFDS ran its TF-free path
  (report,) = reports
  assert report["splits"] == {"test": {"records": 4, "quarantined": 0}, "train": {"records": 10, "quarantined": 0}}
  vdir = os.path.join(out, "cbc", "1.0.0")
  shards = sorted(f for f in os.listdir(vdir) if ".array_record-" in f and "train" in f)
  assert shards
  # The shards are plain ArrayRecord files: array_record's own reader sees every example.
  ds = array_record_data_source.ArrayRecordDataSource([os.path.join(vdir, f) for f in shards])
  assert len(ds) == 10


def test_records_and_media_round_trip_exactly(generated, tmp_path):
  out = str(tmp_path / "built")
  commands.build_corpus("tweets", os.path.join(generated, "tweets"), out)
  import tensorflow_datasets as tfds
  source = tfds.builder_from_directory(os.path.join(out, "tweets", "1.0.0")).as_data_source(split="train")
  built = {ex["record_id"].decode(): ex for ex in (source[i] for i in range(len(source)))}
  originals = [r for r in sources.read("tweets", os.path.join(generated, "tweets", "train.jsonl"))]
  assert len(built) == len(originals) == 20
  root = os.path.join(generated, "tweets")
  for r in originals:
    ex = built[r.record_id]
    assert records_lib.ContentBehaviorRecord.from_dict(json.loads(ex["record"])) == r
    assert [bytes(b) for b in ex["media"]] == [open(os.path.join(root, m.path), "rb").read() for m in r.content.media]


def test_corrupted_corpus_quarantine_report_and_table(tmp_path, capsys):
  corrupt = corrupt_corpus.write_corrupted_corpus(str(tmp_path / "gen"))
  out = str(tmp_path / "built")
  assert cli.main(["data", "build", "--source", "behavior_world", "--input", corrupt.root, "--out", out]) == 0
  printed = capsys.readouterr().out
  counts = {}
  for name in ("cbc", "blift", "tweets"):
    with open(os.path.join(out, name, "1.0.0", builder_lib.QUARANTINE_FILE)) as f:
      report = json.load(f)
    for reason, entry in report["reasons"].items():
      counts[reason] = counts.get(reason, 0) + entry["count"]
      assert entry["examples"] and all(e["location"] for e in entry["examples"])
      # The printed table has a row: reason, count, example locations.
      location = entry["examples"][0]["location"]
      assert any(line.split()[:2] == [reason, str(entry["count"])] and location in line
                 for line in printed.splitlines()), (name, reason)
  assert counts == corrupt.expected
  assert printed.count("report:") == 3


def test_context_is_fitted_on_train_only(generated, tmp_path):
  out = str(tmp_path / "built")
  commands.build_corpus("behavior_world", generated, out)
  with open(os.path.join(out, "cbc", "1.0.0", builder_lib.CONTEXT_FILE)) as f:
    ctx = json.load(f)
  train_asr = {s.asr for r in sources.read("cbc", os.path.join(generated, "cbc", "train.parquet"))
               for s in r.content.scenes}
  test_only = {s.asr for r in sources.read("cbc", os.path.join(generated, "cbc", "test.parquet"))
               for s in r.content.scenes} - train_asr
  assert ctx["asr_pool"] and not test_only & set(ctx["asr_pool"])
  with open(os.path.join(out, "tweets", "1.0.0", builder_lib.CONTEXT_FILE)) as f:
    assert json.load(f)["like_levels"]


def test_bad_inputs_are_user_errors(tmp_path):
  with pytest.raises(UserError):
    commands.build_corpus("cbc", str(tmp_path / "nope"), str(tmp_path / "out"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError):
    commands.build_corpus("cbc", str(tmp_path / "empty"), str(tmp_path / "out"))
  with pytest.raises(UserError):
    builder_lib.find_datasets(str(tmp_path / "empty"))
