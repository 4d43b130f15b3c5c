"""The Beam build (issue 13): `lcbm data build --beam` on Beam's DirectRunner (2 workers, multi-processing)
gives what the single-process build gives: the same records in the same order, byte for byte, the same
quarantine report and context, for every source; TensorFlow is never imported, by the driver or a
worker; gs:// inputs and outputs go through lcbm_jax.paths (a local GCS emulator). Also: media paths
under a bucket root, the generator's real-size media, and what `lcbm bench data --build` prints.

The corpus is the hostile one (tests/corrupt_corpus.py: damaged values and media, paths that leave
their root, FIFOs, duplicate ids within a split and across splits) plus a split whose every row is
quarantined (a duplicate of a training id and a malformed line), which both builds leave out, and a
split that builds the id of a quarantined training row (only clean rows claim an id).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from array_record.python import array_record_data_source

import corrupt_corpus
from data_pipeline import commands, world
from data_pipeline.tfds_builders import builder as builder_lib
from pipeline_helpers import TINY_COUNTS
from test_remote_storage import BUCKET, store  # noqa: F401  (the emulator fixture)

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[1]
BEAM_OPTIONS = "--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing"

# Put first on PYTHONPATH of the Beam build: every Python process (the CLI, each SDK worker) writes, as
# it exits, its pid and whether tensorflow is in its sys.modules. Against the emulator, gcsfs's rename
# goes straight to copy + delete: it tries GCS's moveTo first, which the emulator answers with 501,
# and retries that for 30 s per file (TFDS renames each shard and the finished directory).
SITECUSTOMIZE = '''
import atexit, os, sys
def _report():
  with open(os.environ["LCBM_TEST_PIDS"], "a") as f:
    f.write(f"{os.getpid()} {'tensorflow' in sys.modules}\\n")
atexit.register(_report)
if os.environ.get("STORAGE_EMULATOR_HOST"):
  import fsspec.asyn, gcsfs.core
  gcsfs.core.GCSFileSystem._mv_file = fsspec.asyn.AsyncFileSystem._mv_file
'''


def _add_test_splits(corpus) -> None:
  """tweets/test_time.jsonl: a clean training row again (leakage) and a malformed line, nothing clean;
  tweets/test_brand.jsonl: a row with the id of a training row that was quarantined, so built here."""
  path = os.path.join(corpus.root, "tweets", "train.jsonl")
  with open(path, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  rows = [json.loads(line) for line in lines[:8]]
  assert rows[0]["likes"] == "lots" and rows[0]["id"] not in corpus.clean_ids
  clean = next(line for line in lines if corrupt_corpus._is_json(line) and json.loads(line)["id"] in corpus.clean_ids)
  with open(os.path.join(corpus.root, "tweets", "test_time.jsonl"), "wb") as f:
    f.write(clean + b'{"id": "cut", "text": \n')
  with open(os.path.join(corpus.root, "tweets", "test_brand.jsonl"), "w") as f:
    f.write(json.dumps({**rows[0], "likes": 3}) + "\n")
  manifest = os.path.join(corpus.root, world.MANIFEST_FILE)
  with open(manifest) as f:
    m = json.load(f)
  for e in m["files"]:
    e["count"] = {"tweets/test_time.jsonl": 2, "tweets/test_brand.jsonl": 1}.get(e["path"], e["count"])
  with open(manifest, "w") as f:
    json.dump(m, f)


def _beam_build(builds, out, tmp: pathlib.Path, env=None) -> dict:
  """Each (source, input, media root) through the CLI with --beam; the pids of the Python processes
  that ran, and those that had imported tensorflow."""
  hook = tmp / "hook"
  hook.mkdir(exist_ok=True)
  (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
  pids = tmp / "pids.txt"
  env = {**(env or os.environ), "JAX_PLATFORMS": "cpu", "LCBM_TEST_PIDS": str(pids),
         "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)])}
  for source, path, root in builds:
    cmd = [sys.executable, "-m", "lcbm_jax.cli", "data", "build", "--source", source, "--input", path,
           "--out", str(out), f"--beam-options={BEAM_OPTIONS}"] + (["--media-root", root] if root else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
  exits = [line.split() for line in pids.read_text().splitlines()]
  return {"pids": {pid for pid, _ in exits}, "tensorflow": [pid for pid, tf in exits if tf != "False"]}


def _records(version_dir: str) -> dict[str, list[bytes]]:
  """Split -> every record's bytes, shard after shard (the order a reader sees)."""
  info = json.loads(pathlib.Path(version_dir, builder_lib.INFO_FILE).read_text())
  out = {}
  for split in info["splits"]:
    shards = sorted(f for f in os.listdir(version_dir) if f.startswith(f"{info['name']}-{split['name']}.array_record-"))
    ds = array_record_data_source.ArrayRecordDataSource([os.path.join(version_dir, f) for f in shards])
    out[split["name"]] = [ds[i] for i in range(len(ds))]
    assert len(ds) == sum(int(n) for n in split["shardLengths"])
  return out


def _same_build(single: str, beam: str, replace: tuple[str, str] = ("", "")) -> list[str]:
  """The datasets both builds wrote; asserts their records, reports and contexts are equal (`replace`:
  the single build's input prefix -> the Beam build's, in the reports)."""
  ours = {builder_lib.read_dataset_info(d).name: d for d in builder_lib.find_datasets(single)}
  theirs = {builder_lib.read_dataset_info(d).name: d for d in builder_lib.find_datasets(beam)}
  assert sorted(ours) == sorted(theirs)
  for name, d in ours.items():
    a, b = _records(d), _records(theirs[name])
    assert list(a) == list(b), name   # the same splits (an all-quarantined one left out by both)
    for split in a:
      assert a[split] == b[split], (name, split)   # every record's bytes, in the same order
    for f in (builder_lib.QUARANTINE_FILE, builder_lib.CONTEXT_FILE, "features.json"):
      text = pathlib.Path(d, f).read_text()
      assert text.replace(*replace) == pathlib.Path(theirs[name], f).read_text(), (name, f)
  return sorted(ours)


def test_beam_build_equals_the_single_process_build(tmp_path):
  corpus = corrupt_corpus.write_hostile_corpus(str(tmp_path / "in"))
  _add_test_splits(corpus)
  builds = [list(b) for b in corpus.builds]
  single = str(tmp_path / "single")
  reports = [r for source, path, root in builds for r in commands.build_corpus(source, path, single, root or None)]
  assert "tensorflow" not in sys.modules
  got = _beam_build(builds, tmp_path / "beam", tmp_path)
  assert got["tensorflow"] == []
  assert len(got["pids"]) >= 3 * len(builds), got   # each CLI run and its two SDK workers

  assert _same_build(single, str(tmp_path / "beam")) == ["blift", "cbc", "jsonl", "llava_json", "tweets"]
  # The cases that make the comparison mean something are in both reports.
  items = [i for r in reports for i in r["items"]]
  tweets = next(r for r in reports if r["dataset"] == "tweets")
  assert tweets["splits"]["test_time"] == {"records": 0, "quarantined": 2}
  assert tweets["splits"]["test_brand"] == {"records": 1, "quarantined": 0}
  assert {"split": "test_time", "reason": "duplicate_id"}.items() <= next(
      i for i in items if i["split"] == "test_time" and i["reason"] == "duplicate_id").items()
  assert {"duplicate_id", "media_outside_root", "not_regular_file", "corrupt_media", "malformed_json"} <= {
      i["reason"] for i in items}
  jsonl = next(r for r in reports if r["dataset"] == "jsonl")
  assert any("train/test leakage" in i["detail"] for i in jsonl["items"])


def test_beam_build_reads_and_writes_gs(store, tmp_path):  # noqa: F811  (the fixture)
  from lcbm_jax import paths
  gen = tmp_path / "gen"
  world.generate(str(gen), seed=3, counts=TINY_COUNTS, instructions=True, progress=False)
  with open(gen / "tweets" / "train.jsonl", "rb") as f:
    first = f.readline()
  with open(gen / "tweets" / "train.jsonl", "ab") as f:
    f.write(first + b'{"id": "cut", \n')   # a duplicate id and a malformed line: report locations to compare
  remote_in, remote_out = f"gs://{BUCKET}/bw", f"gs://{BUCKET}/built"
  paths.upload(str(gen), remote_in)
  single = str(tmp_path / "single")
  commands.build_corpus("behavior_world", str(gen), single)

  got = _beam_build([("behavior_world", remote_in, "")], remote_out, tmp_path, env=store["env"])
  assert got["tensorflow"] == [] and len(got["pids"]) >= 3
  local = tmp_path / "from_gs"
  paths.copy_tree(paths.path(remote_out), paths.path(local))
  assert _same_build(single, str(local), (str(gen), remote_in)) == ["blift", "cbc", "llava_json", "tweets"]
  report = json.loads((local / "tweets" / "1.0.0" / builder_lib.QUARANTINE_FILE).read_text())
  assert {i["reason"] for i in report["items"]} == {"duplicate_id", "malformed_json"}
  assert any(i["location"].startswith(remote_in) for i in report["items"])


def test_a_media_path_under_a_bucket_root_stays_under_it():
  """An object store has no symlinks: `..` is folded in the key and the result must keep the root's prefix."""
  from data_pipeline import records
  root = "gs://b/corpus/media"
  ref = lambda p: records.MediaRef(path=p, kind="image")
  assert records.media_path(ref("x/../y.png"), root) == "gs://b/corpus/media/y.png"
  assert records.media_path(ref("gs://b/corpus/media/z.png"), root) == "gs://b/corpus/media/z.png"
  for hostile in ("../secret.png", "../media2/x.png", "/etc/passwd", "gs://other/x.png", "x/../../../../y.png"):
    with pytest.raises(records.RecordError, match="outside"):
      records.media_path(ref(hostile), root)
  with pytest.raises(records.RecordError, match="absolute path"):   # nobody named the root: no absolute path
    records.media_path(ref("gs://b/corpus/media/z.png"), records.ImplicitRoot(root))


def test_media_size_redraws_only_the_media(tmp_path):
  """`generate(media_size=N)`: every image and keyframe N x N (a GIF keeps its frames and durations);
  every other file as without the option, but for the manifest's image_size."""
  from PIL import Image
  counts = {("cbc", "train"): 2, ("cbc", "test"): 0, ("blift", "train"): 2, ("blift", "test"): 0,
            ("tweets", "train"): 2, ("tweets", "test_time"): 0, ("tweets", "test_brand"): 0}
  a, b = tmp_path / "a", tmp_path / "b"
  world.generate(str(a), seed=0, counts=counts, instructions=True, progress=False)
  world.generate(str(b), seed=0, counts=counts, instructions=True, progress=False, media_size=96)
  files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
  media = [f for f in files if f.parts[1:2] == ("media",)]
  assert len(media) == 6
  for f in files:
    if f in media:
      with Image.open(a / f) as small, Image.open(b / f) as big:
        assert (small.format, getattr(small, "n_frames", 1)) == (big.format, getattr(big, "n_frames", 1))
        assert small.size == (world.IMAGE_SIZE,) * 2 and big.size == (96, 96)
        if small.format == "GIF":
          big.seek(big.n_frames - 1)
          small.seek(small.n_frames - 1)
          assert big.info["duration"] == small.info["duration"]
    elif f.name == world.MANIFEST_FILE:
      ma, mb = json.loads((a / f).read_text()), json.loads((b / f).read_text())
      assert (ma.pop("image_size"), mb.pop("image_size")) == (world.IMAGE_SIZE, 96) and ma == mb
    else:
      assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_the_build_bench_prints_both_rates_their_ratio_and_the_projection():
  from data_pipeline import bench
  runs = [{"build": "single process", "workers": 1, "records": 2500, "seconds": 50.0, "records_per_s": 50.0,
           "per_worker": 50.0, "load_before": 1.0},
          {"build": "Beam DirectRunner, multi_processing", "workers": 2, "records": 2500, "seconds": 125.0,
           "records_per_s": 20.0, "per_worker": 10.0, "load_before": 1.0}]
  text = bench.format_build_results({"corpus": "generated small", "media_size": 512, "corpus_bytes": 2**30,
                                     "generated_s": 1.0, "cpus": 2, "runs": runs})
  lines = text.splitlines()
  # workers, records, seconds, records/s, per worker, ratio, load
  assert lines[2].split()[-7:] == ["1", "2500", "50.0", "50.0", "50.0", "1.00x", "1.0"]
  assert lines[3].split()[-7:] == ["2", "2500", "125.0", "20.0", "10.0", "0.40x", "1.0"]
  assert "single process 4.1 h" in lines[4] and "Beam 20.3 worker-hours" in lines[4]
