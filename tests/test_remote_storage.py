"""Remote storage (issue 10, item 7) on `gs://`, served locally by an emulator installed from PyPI
(`gcp-storage-emulator`), through the real path abstraction (`lcbm_jax.paths`: etils.epath + gcsfs)
and Orbax/TensorStore's own GCS driver: checkpoints read from the store, manifests verified there,
a damaged step quarantined there, a data dir read from there, a workdir's own files mirrored.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from train_helpers import built_corpus, subprocess_env

REPO = pathlib.Path(__file__).resolve().parents[1]
BUCKET = "lcbm-test"
CONFIG = f"{REPO}/experiments/configs/demo.py:small"
OVERRIDES = ("--config.checkpoint.every_steps=2", "--config.checkpoint.keep=2", "--config.log.every_steps=1",
             "--config.eval.every_steps=0", "--config.eval.batches=1", "--config.mesh.data=1",
             "--config.mesh.fsdp=8", "--config.data.seq_len=512")
pytestmark = pytest.mark.slow


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  """The emulator, and the environment that points gcsfs and TensorStore at it."""
  root = tmp_path_factory.mktemp("remote")
  port = _free_port()
  server = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  deadline = time.monotonic() + 30
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      break
    except OSError:
      assert time.monotonic() < deadline and server.poll() is None, "the storage emulator did not start"
      time.sleep(0.2)
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_CLOUD_PROJECT": "lcbm-test",
         "LCBM_CACHE": str(root / "cache")}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    yield {"root": root, "env": subprocess_env(root)}
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    server.kill()
    server.wait()


def _lcbm(store, *args) -> str:
  proc = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", *map(str, args)], env=store["env"],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stderr


def _train(store, workdir, data, steps: int) -> str:
  return _lcbm(store, "train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dir={data}", *OVERRIDES,
               f"--config.num_steps={steps}")


def test_checkpoints_data_and_manifests_on_gs(store):
  """A run's workdir copied to the store: export from it (Orbax/TensorStore reading gs://) is bit-exact
  against the local one; its manifests verify there, its iterator state reads back; a damaged step is
  quarantined by a move on the store. A data dir on the store trains bit-exact against the local one.

  Orbax *writing* to this emulator fails: TensorStore's OCDBT commits are conditional writes, and the
  emulator's object generations are not ones TensorStore accepts ("Malformed StorageGeneration"), so
  the workdir is trained locally and copied up; real GCS is what Orbax writes to in production.
  """
  from lcbm_jax import artifacts, checkpoint, paths
  root = store["root"]
  data = built_corpus(root / "local")
  run = root / "run"
  _train(store, run, data, 4)
  remote_run = f"gs://{BUCKET}/run"
  paths.upload(str(run), remote_run)

  _lcbm(store, "export-hf", "--checkpoint", run, "--out", root / "export_local")
  _lcbm(store, "export-hf", "--checkpoint", remote_run, "--out", root / "export_remote")
  names = sorted(p.name for p in (root / "export_local").iterdir())
  assert "model.safetensors" in names and names == sorted(p.name for p in (root / "export_remote").iterdir())
  for name in names:
    assert (root / "export_local" / name).read_bytes() == (root / "export_remote" / name).read_bytes(), name

  store_ckpts = paths.path(remote_run) / "checkpoints"
  assert checkpoint.list_steps(store_ckpts) == [2, 4]
  assert checkpoint.check_step(store_ckpts / "4") is None
  assert str(artifacts.resolve_step_dir(remote_run)) == f"{remote_run}/checkpoints/4"
  assert checkpoint.read_data_state(store_ckpts / "4") == checkpoint.read_data_state(run / "checkpoints" / "4")
  # A manifest written on the store (one object write) equals the local one and verifies there.
  (store_ckpts / "2" / checkpoint.MANIFEST).unlink()
  assert "not verified" in checkpoint.check_step(store_ckpts / "2")
  assert checkpoint.write_manifest(store_ckpts / "2")["files"] == json.loads(
      (run / "checkpoints" / "2" / checkpoint.MANIFEST).read_text())["files"]
  assert checkpoint.check_step(store_ckpts / "2") is None

  # Damage on the store: verification names it, the manager moves the step aside there.
  victim = next(p for rel, p in checkpoint._files(store_ckpts / "4") if rel.startswith("state/"))
  victim.write_bytes(victim.read_bytes()[:-1])
  assert "bytes, manifest says" in checkpoint.check_step(store_ckpts / "4")
  manager = checkpoint.CheckpointManager(remote_run, keep_last=2)
  assert manager.latest_good_step() == 2
  manager.close()
  moved = [p.name for p in (paths.path(remote_run) / "checkpoints_quarantine").iterdir()]
  assert any(n.startswith("4.") and n.endswith(".reason.txt") for n in moved), moved
  assert checkpoint.list_steps(store_ckpts) == [2]

  # A data dir on the store (staged to the local cache once, array_record reads local files).
  remote_data = f"gs://{BUCKET}/data"
  paths.upload(data, remote_data)
  _train(store, root / "run_gs_data", remote_data, 4)
  _lcbm(store, "export-hf", "--checkpoint", root / "run_gs_data", "--out", root / "export_gs_data")
  assert (root / "export_gs_data" / "model.safetensors").read_bytes() == (root / "export_local" / "model.safetensors").read_bytes()
  assert not pathlib.Path("gs:").exists() and not (REPO / "gs:").exists()


def test_a_remote_workdir_keeps_its_own_files_in_a_mirror(store, tmp_path):
  """metrics.jsonl (appended), the tokenizer a run trains and summary.json cannot be written into an
  object in place: they live in a local mirror, copied up, and a resumed run's mirror starts from the
  store's copy."""
  from lcbm_jax import paths
  workdir = f"gs://{BUCKET}/mirror-run"
  local = pathlib.Path(paths.mirror_dir(workdir))
  assert local.is_dir() and not paths.is_remote(local)
  (local / "metrics.jsonl").write_text('{"step": 1}\n')
  (local / "tokenizer").mkdir()
  (local / "tokenizer" / "tokenizer.model").write_bytes(b"sp")
  paths.upload(str(local), workdir)
  assert (paths.path(workdir) / "tokenizer" / "tokenizer.model").read_bytes() == b"sp"
  import shutil
  shutil.rmtree(local)   # another host, or the same one after a restart
  again = pathlib.Path(paths.mirror_dir(workdir))
  assert (again / "metrics.jsonl").read_text() == '{"step": 1}\n'
  assert (again / "tokenizer" / "tokenizer.model").read_bytes() == b"sp"
