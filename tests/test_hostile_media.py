"""Media paths are untrusted: nothing outside the media root is ever opened, only regular files are
read (bounded), and every such row is quarantined with its reason (issue 10: items 1, 2, 4, 5 and 8)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

from data_pipeline import commands
from data_pipeline import records as rec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
_OPENED: list[str] = []
_RECORDING = [False]


def _audit(event, args):
  if _RECORDING[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
    _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)   # process-wide and permanent; it records only while _RECORDING is set


def _row(i: int, path: str) -> str:
  return json.dumps({"record_id": f"r{i}", "content": {"title": f"post {i}", "media": [path]},
                     "behavior": {"upvotes": 3, "comments": ["ok"]}}) + "\n"


def test_media_outside_the_root_and_irregular_files_are_quarantined_unopened(tmp_path):
  root, outside = tmp_path / "root", tmp_path / "outside"
  (root / "media").mkdir(parents=True)
  outside.mkdir()
  image = os.path.join(FIXTURES, "media", "red_ball.png")
  shutil.copy(image, root / "media" / "ok.png")
  canary = outside / "canary.png"          # a valid, unique image: built as clean data if anything let it through
  import numpy as np
  from PIL import Image
  Image.fromarray(np.random.default_rng(7).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(canary)
  os.symlink(canary, root / "media" / "link_out.png")
  os.symlink(root / "media" / "ok.png", root / "media" / "link_in.png")
  (root / "media" / "a_dir.png").mkdir()
  os.mkfifo(root / "media" / "fifo.png")
  rows = [("media/ok.png", None), ("media/link_in.png", None),                 # clean (a symlink inside)
          ("../outside/canary.png", "media_outside_root"), (str(canary), "media_outside_root"),
          ("media/link_out.png", "media_outside_root"), ("/etc/passwd", "media_outside_root"),
          ("/dev/zero", "media_outside_root"), ("media/a_dir.png", "not_regular_file"),
          ("media/fifo.png", "not_regular_file"), ("media/none.png", "missing_media")]
  with open(root / "train.jsonl", "w") as f:
    f.writelines(_row(i, p) for i, (p, _) in enumerate(rows))
  _OPENED.clear()
  _RECORDING[0] = True
  t0 = time.perf_counter()
  try:
    (report,) = commands.build_corpus("jsonl", str(root / "train.jsonl"), str(tmp_path / "built"), str(root))
  finally:
    _RECORDING[0] = False
  assert time.perf_counter() - t0 < 60   # the FIFO did not hang the build
  assert report["splits"]["train"] == {"records": 2, "quarantined": len(rows) - 2}
  items = json.loads(open(os.path.join(report["path"], "quarantine.json")).read())["items"]
  got = {i["record_id"]: i["reason"] for i in items}
  assert got == {f"r{i}": reason for i, (_, reason) in enumerate(rows) if reason}
  assert all(reason in rec.REASONS for reason in got.values())
  real_outside = os.path.realpath(outside)
  opened_outside = [p for p in _OPENED if os.path.realpath(p).startswith(real_outside + os.sep)
                    or p in ("/etc/passwd", "/dev/zero")]
  assert opened_outside == [], opened_outside
  # Read back from the shards: the two clean records hold the image inside the root, never the canary.
  from data_pipeline import pipeline
  corpus = pipeline.Corpus(str(tmp_path / "built"), "train")
  media = [corpus[i].content.media[0].data for i in range(len(corpus))]
  assert len(media) == 2 and all(m == open(image, "rb").read() for m in media)
  assert all(open(canary, "rb").read() != m for m in media)


def test_read_is_bounded_and_regular_only(tmp_path):
  big = tmp_path / "big.png"
  with open(big, "wb") as f:
    f.truncate(rec.MAX_MEDIA_BYTES + 10)   # sparse: no disk used
  try:
    rec.read_media_bytes(rec.MediaRef("big.png"), str(tmp_path))
    raise AssertionError("a file over the limit was read")
  except rec.RecordError as e:
    assert e.reason == "huge_media"


def test_duplicate_ids_are_built_once_and_a_dict_is_not_a_list(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "media"), tmp_path / "media")
  rows = [_row(0, "media/red_ball.png"), _row(1, "media/red_ball.png"), _row(0, "media/red_ball.png")]
  bad = json.loads(_row(5, "media/red_ball.png"))
  bad["behavior"]["comments"] = {"top": "so cool"}   # a dict where the list of comments belongs
  (tmp_path / "train.jsonl").write_text("".join(rows) + json.dumps(bad) + "\n")
  (tmp_path / "test.jsonl").write_text(_row(1, "media/red_ball.png") + _row(9, "media/red_ball.png"))
  reports = commands.build_corpus("jsonl", str(tmp_path), str(tmp_path / "built"), str(tmp_path))
  (report,) = reports
  # Splits build in name order (test, then train): the first row with an id, in that order, is built.
  assert report["splits"]["test"] == {"records": 2, "quarantined": 0}
  assert report["splits"]["train"] == {"records": 1, "quarantined": 3}
  items = json.loads(open(os.path.join(report["path"], "quarantine.json")).read())["items"]
  by = {(i["split"], i["record_id"]): i for i in items}
  assert by[("train", "r1")]["reason"] == "duplicate_id" and "leakage" in by[("train", "r1")]["detail"]
  assert by[("train", "r0")]["reason"] == "duplicate_id" and "this split" in by[("train", "r0")]["detail"]
  assert by[("train", "r5")]["reason"] == "wrong_type" and len(items) == 3


def test_an_enormous_jsonl_line_is_quarantined_in_bounded_memory(tmp_path):
  import resource
  from data_pipeline.sources import jsonl
  shutil.copytree(os.path.join(FIXTURES, "media"), tmp_path / "media")
  with open(tmp_path / "train.jsonl", "wb") as f:
    f.write(_row(0, "media/red_ball.png").encode())
    f.write(b'{"record_id": "big", "content": {"title": "' + b"x" * (jsonl.MAX_LINE_BYTES * 3) + b'"}}\n')
    f.write(_row(2, "media/red_ball.png").encode())
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  got = [(x.record_id, getattr(x, "reason", "clean")) for x in jsonl.read(str(tmp_path / "train.jsonl"))]
  grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
  assert got == [("r0", "clean"), ("train.jsonl:2", "huge_line"), ("r2", "clean")]
  assert grown < 2 * jsonl.MAX_LINE_BYTES   # the 48 MiB line was never held whole


def test_each_split_and_each_media_file_is_read_once(tmp_path):
  """The bytes validated are the bytes written (one open per media file), and a split without one
  clean record is left out without reading the other splits again."""
  import numpy as np
  from PIL import Image
  (tmp_path / "media").mkdir()
  rows = []
  for i in range(4):
    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "media" / f"{i}.png")
    rows.append(_row(i, f"media/{i}.png"))
  (tmp_path / "train.jsonl").write_text("".join(rows))
  (tmp_path / "test.jsonl").write_text(_row(8, "media/none.png") + _row(9, "../escape.png"))   # nothing clean
  _OPENED.clear()
  _RECORDING[0] = True
  try:
    (report,) = commands.build_corpus("jsonl", str(tmp_path), str(tmp_path / "built"), str(tmp_path))
  finally:
    _RECORDING[0] = False
  ours = [os.path.relpath(os.path.realpath(p), os.path.realpath(tmp_path)) for p in _OPENED
          if os.path.realpath(p).startswith(os.path.realpath(tmp_path) + os.sep) and "built" not in p]
  counts = {p: ours.count(p) for p in ours}
  assert counts == {"train.jsonl": 1, "test.jsonl": 1, "media/none.png": 1,   # one attempt, then missing_media
                    **{f"media/{i}.png": 1 for i in range(4)}}, counts
  assert report["splits"] == {"test": {"records": 0, "quarantined": 2}, "train": {"records": 4, "quarantined": 0}}
  from data_pipeline import pipeline
  corpus = pipeline.Corpus(str(tmp_path / "built"), "train")
  assert sorted(corpus[i].content.media[0].data for i in range(4)) == sorted(
      open(tmp_path / "media" / f"{i}.png", "rb").read() for i in range(4))


def test_absolute_media_paths_need_a_root_named_for_them(tmp_path):
  """`--media-root` repeated: relative paths resolve under the first, absolute ones may lie under any;
  without the second root the same row is media_outside_root, and the detail names the option."""
  root, photos = tmp_path / "corpus", tmp_path / "photos"
  (root / "media").mkdir(parents=True)
  photos.mkdir()
  shutil.copy(os.path.join(FIXTURES, "media", "red_ball.png"), root / "media" / "a.png")
  shutil.copy(os.path.join(FIXTURES, "media", "red_ball.png"), photos / "b.png")
  (root / "train.jsonl").write_text(_row(0, "media/a.png") + _row(1, str(photos / "b.png")))
  (one,) = commands.build_corpus("jsonl", str(root / "train.jsonl"), str(tmp_path / "one"), [str(root)])
  assert one["splits"]["train"] == {"records": 1, "quarantined": 1}
  (item,) = json.loads(open(os.path.join(one["path"], "quarantine.json")).read())["items"]
  assert item["reason"] == "media_outside_root" and "--media-root" in item["detail"]
  (two,) = commands.build_corpus("jsonl", str(root / "train.jsonl"), str(tmp_path / "two"), [str(root), str(photos)])
  assert two["splits"]["train"] == {"records": 2, "quarantined": 0}
  from lcbm_jax import cli
  assert cli.main(["data", "build", "--source", "jsonl", "--input", str(root / "train.jsonl"), "--out",
                        str(tmp_path / "cli"), "--media-root", str(root), "--media-root", str(photos)]) == 0
  # An absolute path is allowed only under a root the user named: not under the default one (next to
  # --input), even when it points inside it.
  (root / "abs").mkdir()
  text_only = json.dumps({"record_id": "t", "content": {"title": "no media"}}) + "\n"
  (root / "abs" / "train.jsonl").write_text(text_only + _row(3, str(root / "abs" / "a.png")))
  shutil.copy(root / "media" / "a.png", root / "abs" / "a.png")
  (implicit,) = commands.build_corpus("jsonl", str(root / "abs" / "train.jsonl"), str(tmp_path / "implicit"))
  (item,) = json.loads(open(os.path.join(implicit["path"], "quarantine.json")).read())["items"]
  assert item["record_id"] == "r3" and item["reason"] == "media_outside_root" and "--media-root" in item["detail"]
  (named,) = commands.build_corpus("jsonl", str(root / "abs" / "train.jsonl"), str(tmp_path / "named"),
                                   [str(root / "abs")])
  assert named["splits"]["train"] == {"records": 2, "quarantined": 0}


def test_text_over_the_configured_length_is_counted_at_build(tmp_path, capsys):
  shutil.copytree(os.path.join(FIXTURES, "media"), tmp_path / "media")
  long = json.loads(_row(1, "media/red_ball.png"))
  long["content"]["title"] = "word " * 100
  (tmp_path / "train.jsonl").write_text(_row(0, "media/red_ball.png") + json.dumps(long) + "\n")
  from lcbm_jax import cli
  assert cli.main(["data", "build", "--source", "jsonl", "--input", str(tmp_path / "train.jsonl"), "--out",
                   str(tmp_path / "built"), "--max-text-chars", "200"]) == 0
  assert "records over 200 characters" in capsys.readouterr().out
  (path,) = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "built") for f in fs if f == "quarantine.json"]
  report = json.loads(open(path).read())
  assert report["long_text"] == {"limit_chars": 200, "splits": {"train": 1}, "examples": ["r1"]}
  assert report["splits"]["train"] == {"records": 2, "quarantined": 0}   # counted, still built
