"""Issue 10's corpus acceptance in one build: the corrupted corpus plus every hostile class (paths out of
the media root, symlinks out, /etc/passwd, /dev/zero, directories, FIFOs, duplicates and a train/test
leak, nested wrong types, enormous lines) through every source (cbc, blift, tweets, llava_json,
jsonl), built with `workers=0` in a child under a 4 GiB address-space limit and an audit hook that
records every `open`.

Checked: per-reason counts equal the injected ones; every clean record is built exactly once (read
back from the shards); no file outside the media roots is opened; the canary's marker is in no
record read back raw with `array_record`; the build finishes within 60 s. A second build names `/`
as its media root, so `/dev/zero` and a FIFO are reached and refused by `fstat` (not_regular_file).
"""
from __future__ import annotations

import collections
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import corrupt_corpus

ROOT = pathlib.Path(__file__).resolve().parents[1]
_AS_LIMIT = 4 << 30

_BUILD = r"""
import json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
opened = []
recording = [False]
def audit(event, args):
  if recording[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
    opened.append(os.fsdecode(args[0]))
sys.addaudithook(audit)
from data_pipeline import commands
builds, out, result = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
recording[0] = True
t0 = time.perf_counter()
reports = [r for source, path, root in builds for r in commands.build_corpus(source, path, out, root or None)]
seconds = time.perf_counter() - t0
recording[0] = False
json.dump({{"reports": reports, "opened": opened, "seconds": seconds}}, open(result, "w"))
"""


def _build(builds, out: pathlib.Path, tmp: pathlib.Path) -> dict:
  result = tmp / f"{out.name}.json"
  proc = subprocess.run([sys.executable, "-c", _BUILD.format(limit=_AS_LIMIT), json.dumps(builds), str(out), str(result)],
                        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return json.loads(result.read_text())


def test_hostile_corpus_through_every_source(tmp_path):
  corpus = corrupt_corpus.write_hostile_corpus(str(tmp_path / "in"))
  got = _build([list(b) for b in corpus.builds], tmp_path / "built", tmp_path)
  assert got["seconds"] < 60, got["seconds"]

  counts = collections.Counter()
  for report in got["reports"]:
    for reason, entry in report["reasons"].items():
      counts[reason] += entry["count"]
  assert dict(counts) == corpus.expected
  assert {r["dataset"] for r in got["reports"]} == {"cbc", "blift", "tweets", "llava_json", "jsonl"}

  # Nothing outside the corpus (its media roots) was opened: not the canary, not /etc/passwd, not /dev/zero.
  inside = [os.path.realpath(corpus.root) + os.sep, os.path.realpath(tmp_path / "built") + os.sep,
            os.path.realpath(sys.prefix) + os.sep, str(ROOT) + os.sep]
  outside = sorted({p for p in got["opened"] if not any(os.path.realpath(p).startswith(r) for r in inside)})
  # Besides the corpus, the output, Python and the project: only the temporary files libraries make.
  assert all(os.path.dirname(p) == tempfile.gettempdir() for p in outside), outside
  assert not [p for p in got["opened"] if os.path.realpath(p).startswith(os.path.realpath(corpus.outside))]
  assert "/etc/passwd" not in got["opened"] and "/dev/zero" not in got["opened"], outside

  # Read back: raw records never hold the canary; decoded records hold each clean id exactly once.
  shards = glob.glob(str(tmp_path / "built" / "*" / "*" / "*.array_record-*"))
  assert shards
  from array_record.python import array_record_module
  for shard in shards:
    reader = array_record_module.ArrayRecordReader(shard)
    assert all(corrupt_corpus.CANARY_MARKER not in r for r in reader.read_all())
    reader.close()
  import tensorflow_datasets as tfds
  built = collections.Counter()
  for report in got["reports"]:
    b = tfds.builder_from_directory(report["path"])
    for split in b.info.splits:
      source = b.as_data_source(split)
      built.update(source[i]["record_id"].decode() if isinstance(source[i]["record_id"], bytes)
                   else source[i]["record_id"] for i in range(len(source)))
  assert set(built) == set(corpus.clean_ids) and set(built.values()) == {1}, built
  assert "tensorflow" not in sys.modules or not hasattr(sys.modules["tensorflow"], "constant")


def test_a_named_root_reaches_dev_zero_and_a_fifo_and_refuses_them(tmp_path):
  """With `--media-root /`, /dev/zero and a FIFO are inside the root: opened non-blocking, refused by
  fstat, within the time and memory limits (a read would never end, or block forever)."""
  corpus = tmp_path / "c"
  corpus.mkdir()
  os.mkfifo(corpus / "fifo.png")
  rows = [{"record_id": "z", "content": {"title": "zero", "media": ["/dev/zero"]}},
          {"record_id": "f", "content": {"title": "fifo", "media": [str(corpus / "fifo.png")]}}]
  (corpus / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                      + json.dumps({"record_id": "ok", "content": {"title": "text only"}}) + "\n")
  got = _build([["jsonl", str(corpus / "train.jsonl"), "/"]], tmp_path / "built", tmp_path)
  assert got["seconds"] < 60
  (report,) = got["reports"]
  items = json.loads(open(os.path.join(report["path"], "quarantine.json")).read())["items"]
  assert {i["record_id"]: i["reason"] for i in items} == {"z": "not_regular_file", "f": "not_regular_file"}
  assert {i["record_id"]: i["detail"].split(" is ")[-1] for i in items} == {"z": "a device", "f": "a FIFO"}
  assert report["splits"]["train"] == {"records": 1, "quarantined": 2}
