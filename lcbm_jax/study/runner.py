"""A study on disk: arms x seeds, each run in its own workdir, every finished step kept and reused.

  study = Study(root, "free_lunch", spec={"mode": "full", "seeds": [0, 1, 2], ...})
  base = study.step("seed0/base/train", lambda: train.train(config, study.workdir("seed0", "base")))
  ...
  study.summary()   # "12 steps reused (finished before), 3 run now, 1 resumed from its checkpoint"

Layout of `root`:
  study.json            what the study was asked to do (`spec`); asking something else of the same root
                        is refused (a finished run is never silently redone or overwritten)
  steps/<key>.json      each finished step's JSON output, written atomically (temporary file + rename)
  runs/...              the runs' workdirs (`workdir(...)`): checkpoints, metrics, tokenizer
  jax_cache/            JAX's persistent compilation cache, unless JAX_COMPILATION_CACHE_DIR names one:
                        a study's runs share their shapes, so every run after the first loads its
                        executables instead of compiling them (a 2-step fine-tune: 40 s -> 6 s on 2 cores)

A study killed at any moment (SIGKILL included) and started again reuses every finished step and
resumes an interrupted training run from its newest verified checkpoint (the trainer's own resume),
so it ends with the same results as an uninterrupted study. What a step returns must be a function of
its inputs (no timings): the results table is rendered from it.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable

import jax

from lcbm_jax.errors import UserError
from lcbm_jax.training import train

if TYPE_CHECKING:   # the config type for the signature only
  import ml_collections

STUDY_FILE = "study.json"


def _json(x: Any) -> str:
  return json.dumps(x, indent=1, sort_keys=True, default=float)


def write_json_atomic(path: str, obj: Any) -> None:
  """`obj` as JSON at `path`, all or nothing: a kill mid-write leaves the old file (or none)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(_json(obj))
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


class Study:
  """Reuse-or-run bookkeeping for one study directory (see the module docstring)."""

  def __init__(self, root: str, name: str, spec: dict, *, log=None):
    self.root, self.name = os.path.abspath(root), name
    self.spec = json.loads(_json(spec))   # as it reads back from disk
    self.reused: list[str] = []
    self.ran: list[str] = []
    self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    path = os.path.join(self.root, STUDY_FILE)
    want = {"study": name, "spec": self.spec}
    if os.path.exists(path):
      with open(path) as f:
        have = json.load(f)
      if have != want:
        changed = sorted(k for k in set(have.get("spec", {})) | set(self.spec)
                         if have.get("spec", {}).get(k) != self.spec.get(k))
        raise UserError(f"{self.root} holds a {have.get('study')!r} study made with other settings "
                        f"({', '.join(changed) or 'study name'} differ); its finished runs would not be "
                        "the ones asked for. Use another --workdir, or delete that one to start over")
    else:
      write_json_atomic(path, want)
    if not jax.config.jax_compilation_cache_dir:
      jax.config.update("jax_compilation_cache_dir", os.path.join(self.root, "jax_cache"))
      # Every program a study's runs share, however quick it compiled: the fine-tunes and probes are
      # many short runs whose compiles would otherwise dominate them.
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
      jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

  def workdir(self, *parts: str) -> str:
    return os.path.join(self.root, "runs", *parts)

  def _step_path(self, key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
      raise ValueError(f"bad step key {key!r}")
    return os.path.join(self.root, "steps", key + ".json")

  def done(self, key: str) -> bool:
    return os.path.exists(self._step_path(key))

  def step(self, key: str, fn: Callable[[], Any]) -> Any:
    """`fn()`'s JSON output, from disk when a finished step `key` holds it, else computed and kept."""
    path = self._step_path(key)
    if os.path.exists(path):
      with open(path) as f:
        out = json.load(f)
      self.reused.append(key)
      self.log(f"[{self.name}] reused {key} (finished before)")
      return out
    self.log(f"[{self.name}] running {key}")
    t0 = time.perf_counter()
    out = json.loads(_json(fn()))
    write_json_atomic(path, out)
    self.ran.append(key)
    self.log(f"[{self.name}] finished {key} in {time.perf_counter() - t0:.0f} s")
    return out

  def summary(self) -> str:
    return (f"[{self.name}] {len(self.reused)} step(s) reused (finished before, not redone), "
            f"{len(self.ran)} run now")


class Preempted(Exception):
  """A study's training run stopped by a preemption signal (SIGTERM) after checkpointing its step."""


def train_run(config: "ml_collections.ConfigDict", workdir: str, label: str) -> dict:
  """Trains one run of a study in `workdir` (resuming its newest checkpoint) and returns only what the
  run determines - no timings, no paths - so a resumed run's step output equals an uninterrupted one's.

  Prints what the run saw (input tokens, loss tokens, images): every arm's token budget is on record.
  Raises `Preempted` when a signal stopped it; `resumable` turns that into the exit of `lcbm train`.
  """
  summary = train.train(config, workdir)
  if summary["preempted"]:
    raise Preempted(f"{label} stopped at step {summary['step']} and checkpointed")
  seen = summary["seen"]
  print(f"  {label}: {seen['tokens']:,} input tokens, {seen['loss_tokens']:,} loss tokens, {seen['images']:,} "
        f"images in {summary['step']} steps", file=sys.stderr, flush=True)
  return {"steps": summary["step"], "seen": seen, "eval_loss": summary["eval_loss"]}


def resumable(main: Callable[..., int | None]) -> Callable[..., int]:
  """`main` for a study script: a preempted run ends the study with exit 0 and the way to resume, as a
  preempted `lcbm train` does (a relaunch loop reruns the same command; finished steps are reused)."""
  def wrapped(*args, **kwargs) -> int:
    try:
      return int(main(*args, **kwargs) or 0)
    except Preempted as e:
      print(f"{e}; run the same command to resume the study (finished steps are reused)", file=sys.stderr)
      return 0
  return wrapped
