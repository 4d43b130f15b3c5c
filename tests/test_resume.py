"""Resume acceptance, end to end through `lcbm train` in subprocesses.

An uninterrupted run of N steps is the reference. A second run of the same command is interrupted
three times -- SIGKILL while Orbax is writing a checkpoint, SIGTERM (preemption: save and exit 0),
SIGKILL at a seeded random moment -- and resumed each time by rerunning the command. It must end with
bit-identical parameters and optimizer state and identical per-step losses.

Sample ids: before each segment of the interrupted run the test copies the data-iterator state of the
step it will resume from. Replaying the Grain pipeline from each copied state for the steps that
segment contributed gives the samples the run trained on; they must equal, step by step, the
reference's from-scratch sequence (no sample repeated or skipped at any resume), and each replay
must end in exactly the state the next segment resumed from.

The runs share a JAX compilation cache (in the test's temp dir) so only the first one compiles.
"""
import dataclasses
import glob
import json
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from data_pipeline import pipeline
from lcbm_jax import sharding
from lcbm_jax import checkpoint as ck
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train
from train_helpers import built_corpus, subprocess_env

REPO = pathlib.Path(__file__).resolve().parents[1]
N_STEPS = 8
CONFIG = f"{REPO}/experiments/configs/demo.py:small"
# seq_len 512: the tiny preset's longest, so every CBC sample of the small corpus fits.
OVERRIDES = (f"--config.num_steps={N_STEPS}", "--config.checkpoint.every_steps=2", "--config.checkpoint.keep=2",
             "--config.log.every_steps=1", "--config.eval.every_steps=0", "--config.eval.batches=1",
             "--config.mesh.data=1", "--config.mesh.fsdp=8", "--config.data.seq_len=512")
DEADLINE_S = 400


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("resume")
  return {"root": root, "env": subprocess_env(root), "data": built_corpus(root)}


def _cmd(setup, workdir, *extra) -> list[str]:
  return [sys.executable, "-m", "lcbm_jax.cli", "train", "--config", CONFIG, "--workdir", str(workdir),
          f"--config.data.dir={setup['data']}", *OVERRIDES, *extra]


def _run(setup, workdir, *extra) -> str:
  proc = subprocess.run(_cmd(setup, workdir, *extra), env=setup["env"], capture_output=True, text=True,
                        timeout=DEADLINE_S)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stderr


def _start(setup, workdir, *extra) -> subprocess.Popen:
  return subprocess.Popen(_cmd(setup, workdir, *extra), env=setup["env"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _wait_for(proc, condition, what: str):
  start = time.monotonic()
  while not condition():
    if proc.poll() is not None:
      raise AssertionError(f"run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
    if time.monotonic() - start > DEADLINE_S:
      proc.kill()
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.0005)


def _logged_steps(workdir) -> list[int]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
  return [r["step"] for r in records if "train/loss" in r]


def _last_per_step(path, key) -> dict:
  """step -> value of `key` in the last line for that step (steps re-run after a kill log twice)."""
  out = {}
  for line in pathlib.Path(path).read_text().splitlines():
    record = json.loads(line)
    if key in record:
      out[record["step"]] = record[key]
  return out


def _final(workdir):
  step_dir = pathlib.Path(workdir) / ck.CHECKPOINTS / str(N_STEPS)
  assert ck.check_step(step_dir) is None
  meta = ocp.StandardCheckpointHandler().metadata(step_dir / "state").tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
  with ocp.PyTreeCheckpointer() as ckptr:
    state = ckptr.restore(step_dir / "state", args=ocp.args.PyTreeRestore(restore_args=restore_args))
  return state, ck.read_data_state(step_dir)


def _assert_same_run(ref, other):
  (ref_state, ref_data), (state, data) = _final(ref), _final(other)
  assert int(state["step"]) == N_STEPS
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ref_state)[0], jax.tree.leaves(state), strict=True):
    assert a.dtype == b.dtype and np.array_equal(a, b), f"{jax.tree_util.keystr(path)} differs"
  assert data == ref_data   # data position, quarantine counts, tokens and batches consumed
  # The run's totals (input and loss tokens, images) come through every interruption unchanged.
  seen = [json.loads((d / "summary.json").read_text())["seen"] for d in (ref, other)]
  assert seen[0] == seen[1] and seen[0]["loss_tokens"] > 0 and seen[0]["tokens"] > seen[0]["loss_tokens"], seen
  losses = _last_per_step(ref / "metrics.jsonl", "train/loss")
  assert sorted(losses) == list(range(1, N_STEPS + 1))
  assert _last_per_step(other / "metrics.jsonl", "train/loss") == losses


def _pipeline_config(setup, tokenizer_dir) -> pipeline.PipelineConfig:
  """The training pipeline of the runs (as `lcbm train` builds it from the config)."""
  config = config_lib.load(CONFIG, [f"--config.data.dir={setup['data']}", *OVERRIDES])
  model_cfg = train.model_config(config)
  mesh = sharding.make_mesh(data=config.mesh.data, fsdp=config.mesh.fsdp, tensor=config.mesh.tensor)   # the run's
  return dataclasses.replace(train.pipeline_config(config, model_cfg, str(tokenizer_dir), mesh), num_epochs=None)


def _replay(base, state, n: int):
  """Sample ids of the next `n` batches from data-iterator `state`, and the state after them."""
  it = pipeline.make_iterator(base, state)
  ids = [[int(i) for i in next(it)["sample_ids"].ravel() if i >= 0] for _ in range(n)]
  after = it.get_state()
  it.close()
  return ids, after


def _data_state(ckpts, step):
  return None if step is None else ck.read_data_state(ckpts / str(step))


def test_interrupted_and_resumed_run_equals_uninterrupted(setup):
  ref = setup["root"] / "ref"
  _run(setup, ref)
  tokenizer = f"--config.data.tokenizer={ref / 'tokenizer'}"   # trained once, by the reference run
  run = setup["root"] / "run"
  ckpts = run / ck.CHECKPOINTS
  segments = []   # (resume step or None, data state it resumes with), one per start of the run

  def note_segment() -> int | None:
    step = ck.find_latest_good_step(ckpts)[0]
    segments.append((step, _data_state(ckpts, step)))
    return step

  def start():
    note_segment()
    return _start(setup, run, tokenizer)

  # 1) SIGKILL while Orbax is writing step >= 4 (its temporary directory exists).
  def saving_step() -> int:
    tmp = glob.glob(str(ckpts / "*.orbax-checkpoint-tmp*"))
    return max((int(pathlib.Path(t).name.split(".")[0]) for t in tmp), default=0)

  proc = start()
  _wait_for(proc, lambda: saving_step() >= 4, "a save of step >= 4")
  killed_during = saving_step()
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  # The step being written is unusable (uncommitted, or committed without its manifest); the one
  # before it verifies (its manifest is written before the next save starts).
  assert ck.check_step(ckpts / str(killed_during)) is not None
  good, _ = ck.find_latest_good_step(ckpts)
  assert good == killed_during - 2

  # 2) SIGTERM once the resumed run has made a step: it saves that step, exits 0.
  proc = start()
  _wait_for(proc, lambda: _logged_steps(run).count(good + 1) == 2, f"step {good + 1} again")
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=DEADLINE_S)
  assert proc.returncode == 0, err[-3000:]
  assert f"resumed from step {good}" in err
  preempted = max(ck.list_steps(ckpts))
  assert preempted > good and f"preempted: saved step {preempted}" in err
  assert ck.find_latest_good_step(ckpts) == (preempted, {})

  # 3) SIGKILL at a seeded random moment after the resumed run starts logging.
  logged = len(_logged_steps(run))
  proc = start()
  _wait_for(proc, lambda: len(_logged_steps(run)) > logged, "a new step")
  time.sleep(random.Random(20261122).uniform(0.0, 3.0))
  proc.send_signal(signal.SIGKILL)
  proc.communicate()

  # 4) Run to the end.
  last = note_segment()
  err = _run(setup, run, tokenizer)
  assert f"resumed from step {last}" in err
  _assert_same_run(ref, run)

  # Sample ids: the reference's sequence, and the interrupted run's, segment by segment.
  base = _pipeline_config(setup, ref / "tokenizer")
  ref_ids, ref_end = _replay(base, None, N_STEPS)
  assert ref_end == _final(ref)[1]          # the replay is what the reference run consumed
  flat = [i for ids in ref_ids for i in ids]
  assert len(flat) == len(set(flat)) and len(flat) >= N_STEPS   # no sample twice within the run
  run_ids = []
  bounds = [step or 0 for step, _ in segments] + [N_STEPS]
  for (_, state), lo, hi in zip(segments, bounds, bounds[1:]):
    ids, end = _replay(base, state, hi - lo)
    run_ids += ids
    assert end == (_data_state(ckpts, hi) if hi == N_STEPS else next(s for st, s in segments if st == hi))
  assert run_ids == ref_ids
  print(f"resumed from {[st for st, _ in segments]}, killed during the save of {killed_during}, "
        f"preempted at {preempted}; {len(flat)} samples in {N_STEPS} steps, all equal")
