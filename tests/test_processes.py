"""Process faults, through the real `lcbm train` in subprocesses: nothing outlives a killed trainer,
a killed rank stops the others with one line, a failed checkpoint save is one error line and leaves
the newest verified step as the resume point.

The runs are tiny (one device, a one-layer model) and share a JAX compilation cache.
"""
import errno
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import psutil
import pytest

from lcbm_jax import checkpoint as ck
from lcbm_jax.errors import UserError
from train_helpers import built_corpus, subprocess_env

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO}/experiments/configs/demo.py:small"
# seq_len 512: every sample of the small corpus fits, so the closing eval of a finished run has data.
TINY = ("--config.model.num_layers=1", "--config.model.hidden_size=32", "--config.data.seq_len=512",
        "--config.log.every_steps=1", "--config.eval.every_steps=0", "--config.eval.batches=1")
DEADLINE_S = 300

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("processes")
  return {"root": root, "env": subprocess_env(root, devices=1), "data": built_corpus(root)}


def _train_args(setup, workdir, *extra) -> list[str]:
  return ["train", "--config", CONFIG, "--workdir", str(workdir), f"--config.data.dir={setup['data']}", *TINY,
          *extra]


def _logged_steps(workdir) -> int:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return 0
  return sum('"train/loss"' in line for line in path.read_text().splitlines() if line.endswith("}"))


def _wait_for(procs, condition, what: str):
  start = time.monotonic()
  while not condition():
    for p in procs:
      if p.poll() is not None:
        raise AssertionError(f"a process ended (rc {p.returncode}) before {what}")
    if time.monotonic() - start > DEADLINE_S:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.2)


def _gone(p: psutil.Process) -> bool:
  try:
    return p.status() == psutil.STATUS_ZOMBIE   # dead; only its exit status is left to reap
  except psutil.NoSuchProcess:
    return True


def _kill_all(procs) -> None:
  for p in procs:
    try:
      p.kill()
    except (psutil.NoSuchProcess, ProcessLookupError):
      pass


def test_sigkill_of_the_trainer_leaves_no_process(setup, tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen([sys.executable, "-m", "lcbm_jax.cli", *_train_args(
      setup, workdir, "--config.num_steps=100000", "--config.checkpoint.every_steps=100000",
      "--config.data.workers=2")], env=setup["env"], stdout=subprocess.DEVNULL,
      stderr=open(tmp_path / "stderr.txt", "w"))
  trainer = psutil.Process(proc.pid)
  descendants = []
  try:
    _wait_for([proc], lambda: _logged_steps(workdir) >= 2, "two logged steps")   # the workers are feeding it
    descendants = trainer.children(recursive=True)
    cmdlines = [" ".join(p.cmdline()) for p in descendants]
    assert sum("multiprocessing.spawn" in c for c in cmdlines) == 2, cmdlines
    assert sum("resource_tracker" in c for c in cmdlines) == 1, cmdlines
    assert all(p.is_running() and not _gone(p) for p in descendants)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    while not all(_gone(p) for p in descendants) and time.monotonic() - killed < 3.0:
      time.sleep(0.05)
    alive = [" ".join(p.cmdline()) for p in descendants if not _gone(p)]
    assert not alive, f"alive 3 s after SIGKILL of the trainer: {alive}"
  finally:
    proc.kill()
    _kill_all(descendants)


@pytest.mark.parametrize("lost", [1, 0])   # 0 holds the coordination service: its loss aborts JAX itself
def test_killed_rank_stops_the_other_with_one_line(setup, tmp_path, lost):
  survivor = 1 - lost
  workdir = tmp_path / "run"
  with socket.socket() as sock:   # a free port for the coordinator
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  errs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "lcbm_jax.cli", *_train_args(
          setup, workdir, "--config.num_steps=100000", "--config.checkpoint.every_steps=100000"),
       "--coordinator-address", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
      env=setup["env"], stdout=subprocess.DEVNULL, stderr=open(errs[i], "w")) for i in range(2)]
  try:
    _wait_for(procs, lambda: _logged_steps(workdir) >= 2, "two logged steps")
    procs[lost].send_signal(signal.SIGKILL)
    procs[lost].wait()
    killed = time.monotonic()
    try:
      rc = procs[survivor].wait(timeout=60)
    except subprocess.TimeoutExpired:
      raise AssertionError(f"process {survivor} still runs 60 s after process {lost} was killed")
    took = time.monotonic() - killed
    err = errs[survivor].read_text()
    assert rc != 0
    assert took < 30, f"process {survivor} exited {took:.1f} s after process {lost} was killed"
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"lcbm: error: lost process {lost} of 2"), err[-3000:]
    assert "Traceback" not in err and "stack trace" not in err, err[-3000:]
  finally:
    for p in procs:
      p.kill()


# Runs `lcbm` with the async writer's commit of step $FAIL_STEP refused as a read-only filesystem
# refuses it (the tests run as root, for whom a read-only directory is writable).
_REFUSE_COMMIT = """
import errno, os, sys
from orbax.checkpoint._src.path import atomicity
real = atomicity.AtomicRenameTemporaryPath.finalize
async def finalize(self, *args, **kwargs):
  if self.get_final().name == os.environ["FAIL_STEP"]:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.get_final()))
  return await real(self, *args, **kwargs)
atomicity.AtomicRenameTemporaryPath.finalize = finalize
from lcbm_jax import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_failed_async_save_is_one_error_and_resume_uses_the_verified_step(setup, tmp_path):
  workdir = tmp_path / "run"
  args = _train_args(setup, workdir, "--config.num_steps=6", "--config.checkpoint.every_steps=2")
  failed = subprocess.run([sys.executable, "-c", _REFUSE_COMMIT, *args], env={**setup["env"], "FAIL_STEP": "4"},
                          capture_output=True, text=True, timeout=DEADLINE_S)
  assert failed.returncode == 2, failed.stderr[-3000:]
  last = failed.stderr.strip().splitlines()[-1]
  assert last.startswith("lcbm: error: checkpoint step 4 could not be written"), failed.stderr[-3000:]
  assert "Read-only file system (EROFS)" in last and "step 2, the newest verified one, stays the resume point" in last
  assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
  ckpts = workdir / ck.CHECKPOINTS
  assert ck.check_step(ckpts / "2") is None
  assert ck.find_latest_good_step(ckpts)[0] == 2

  resumed = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", *args], env=setup["env"], capture_output=True,
                           text=True, timeout=DEADLINE_S)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step 2" in resumed.stderr
  assert ck.find_latest_good_step(ckpts)[0] == 6
  assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 6


def test_save_refused_before_it_returns_is_a_user_error(tmp_path, monkeypatch):
  """The small items are written before `save` returns: a full disk there is the same one error."""
  mngr = ck.CheckpointManager(tmp_path)
  state = {"w": jnp.arange(8.0)}
  mngr.save(1, state, {"k": 1}, {})
  mngr.wait_until_finished()
  real = ck._FilesHandler.save

  def full_disk(self, directory, args):
    if "/2." in str(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return real(self, directory, args)

  monkeypatch.setattr(ck._FilesHandler, "save", full_disk)
  with pytest.raises(UserError, match=r"checkpoint step 2 could not be written .*No space left on device "
                                      r"\(ENOSPC\).*step 1, the newest verified one, stays the resume point"):
    mngr.save(2, state, {"k": 2}, {})
  mngr.close()   # the failure was reported once; closing does not raise it again
  assert ck.find_latest_good_step(tmp_path / ck.CHECKPOINTS)[0] == 1
