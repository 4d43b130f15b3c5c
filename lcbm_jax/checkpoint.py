"""Checkpoints: Orbax-managed, atomic, verified; everything needed to resume or to serve.

Step directory layout (`<workdir>/checkpoints/<step>/`):

  _CHECKPOINT_METADATA    Orbax step metadata (item handlers, commit timestamp)
  commit_success.txt      Orbax commit marker, written just before the atomic rename
  state/                  TrainState pytree (step, params, opt_state, non-finite counters), OCDBT, sharded
  data/process_<i>.json   the data iterator's state of JAX process i (one file per process)
  config/metadata         the training config as JSON (`ConfigDict.to_dict()`)
  model/metadata          the model config as JSON (`dataclasses.asdict(LCBMConfig)`)
  tokenizer/              the run's tokenizer, byte for byte: the SentencePiece tokenizer.model it trained,
                          or the pretrained model's Hugging Face files (tokenizer.json, tokenizer_config.json, ...)
  manifest.json           {"format", "step_dir", "files": {relpath: {"size", "sha256"}}}: every file above,
                          written *after* the commit (tmp file + fsync + os.replace)

A params-only checkpoint (`save_params`: imports, exports) has the same layout at its root with
`params/` instead of `state/` and no `data/`.

Resume order (the only place it is written down):
  1. which steps exist        integer-named directories under `<workdir>/checkpoints/`
                              (Orbax `<step>.orbax-checkpoint-tmp*` directories are partial saves: warned
                              about and cleaned up by Orbax)
  2. which are committed      `commit_success.txt` and `_CHECKPOINT_METADATA` present
  3. which verify             `manifest.json` present, parses, and every file in it has its size and SHA-256
  4. newest good              the newest step passing 2 and 3; each newer step that fails is named in a
                              warning (step and file) and moved to `<workdir>/checkpoints_quarantine/`, so
                              training can write that step number again
  5. restore state            onto the *current* mesh: the caller passes the abstract TrainState
                              (`jax.ShapeDtypeStruct` leaves carrying the target shardings); shapes are
                              checked against the checkpoint first (UserError naming the leaf)
  6. restore data iterator    `data_state` of this process -> `iterator.set_state(...)`
  7. continue at step + 1     the saved state is the state after `step` optimizer updates

Saves are asynchronous: `save` returns once the arrays are copied off the devices; Orbax writes and
commits in the background, then a manifest thread hashes the committed step, writes the manifest
and applies retention (keep the newest `keep_last` verified steps plus every step divisible by
`keep_every`). Retention therefore never deletes a good step before a newer one is verified. A
kill -9 at any moment leaves a step that is uncommitted, committed without a manifest, or committed
with a complete manifest; only the last counts at resume.

Opening a checkpoint for inference (a workdir, a step, a params-only save or a Hugging Face
directory) is `lcbm_jax/artifacts.py`; SIGTERM handling is `lcbm_jax/training/preemption.py`.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import os
import pathlib
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from etils import epath
from jax.experimental import multihost_utils

from data_pipeline import hf_tokenizer
from lcbm_jax import paths
from lcbm_jax.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
QUARANTINE = "checkpoints_quarantine"
MANIFEST = "manifest.json"
COMMIT_MARKER = "commit_success.txt"   # Orbax's own commit marker (atomicity_types.COMMIT_SUCCESS_FILE)
STEP_METADATA = "_CHECKPOINT_METADATA"
_TMP_INFIX = ".orbax-checkpoint-tmp"
_HASH_CHUNK = 1 << 22


# --- files item: small per-process files (data iterator state, tokenizer) inside the Orbax commit ---


class _FilesHandler(ocp.CheckpointHandler):
  """Writes named byte strings into the item directory, so they commit atomically with the arrays."""

  def save(self, directory, args: "FilesSave"):
    if args.every_process or jax.process_index() == 0:
      for name, data in args.files.items():
        (paths.path(directory) / name).write_bytes(data)

  def restore(self, directory, args: "FilesRestore | None" = None) -> dict[str, bytes]:
    directory = paths.path(directory)
    names = args.names if args and args.names else sorted(p.name for p in directory.iterdir()
                                                          if p.name != COMMIT_MARKER)
    return {n: (directory / n).read_bytes() for n in names}

  def metadata(self, directory):
    return None

  def finalize(self, directory):
    pass

  def close(self):
    pass


@ocp.args.register_with_handler(_FilesHandler, for_save=True)
@dataclasses.dataclass
class FilesSave(ocp.args.CheckpointArgs):
  files: dict[str, bytes]
  every_process: bool = False   # True: each process writes its own files (names must differ)


@ocp.args.register_with_handler(_FilesHandler, for_restore=True)
@dataclasses.dataclass
class FilesRestore(ocp.args.CheckpointArgs):
  names: tuple[str, ...] = ()


def _item_handlers(array_item: str) -> dict[str, ocp.CheckpointHandler]:
  return {array_item: ocp.StandardCheckpointHandler(), "data": _FilesHandler(),
          "config": ocp.JsonCheckpointHandler(), "model": ocp.JsonCheckpointHandler(),
          "tokenizer": _FilesHandler()}


def _config_to_dict(config: Any) -> dict:
  if config is None:
    return {}
  if hasattr(config, "to_dict"):   # ml_collections.ConfigDict
    config = config.to_dict()
  # Round-trip through JSON so tuples/numpy scalars become plain JSON and failures surface now.
  return json.loads(json.dumps(config, default=_json_default))


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, (set, frozenset)):
    return list(x)
  if isinstance(x, (pathlib.PurePath, epath.Path)):
    return str(x)
  raise TypeError(f"not JSON-serialisable in the checkpoint config: {type(x).__name__} {x!r}")


def _model_to_dict(model_cfg: Any) -> dict:
  if model_cfg is None:
    return {}
  return _config_to_dict(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dataclasses.asdict(model_cfg))


def _tokenizer_files(tokenizer) -> dict[str, bytes]:
  """The files of a tokenizer, to carry byte for byte: a tokenizer object, its directory (a Hugging
  Face tokenizer's files, or a SentencePiece tokenizer.model), or a tokenizer.model path."""
  if tokenizer is None:
    return {}
  if hasattr(tokenizer, "files"):          # data_pipeline.hf_tokenizer.HFTokenizer
    return dict(tokenizer.files)
  if hasattr(tokenizer, "model_proto"):    # data_pipeline.tokenizer.Tokenizer (SentencePiece)
    return {"tokenizer.model": tokenizer.model_proto}
  path = paths.path(tokenizer)
  if path.is_dir() and (path / "tokenizer.json").is_file():
    return {name: (path / name).read_bytes() for name in hf_tokenizer.FILES if (path / name).is_file()}
  model = path if path.is_file() else path / "tokenizer.model"
  if not model.is_file():
    raise UserError(f"tokenizer not found: {model} does not exist; pass the directory holding tokenizer.model "
                    "or a Hugging Face tokenizer.json")
  return {"tokenizer.model": model.read_bytes()}


def _encode_data_state(data_state: Any, seen: dict | None = None) -> bytes:
  # Grain iterators return either a JSON-able dict or JSON bytes; keep which one it was. `seen`: what
  # the run has consumed so far (tokens, loss tokens), resumed with the iterator it belongs to.
  if isinstance(data_state, bytes):
    record = {"kind": "bytes", "value": data_state.decode("utf-8")}
  else:
    record = {"kind": "json", "value": data_state}
  if seen is not None:
    record["seen"] = seen
  return json.dumps(record, default=_json_default).encode()


def _decode_data_state(raw: bytes) -> Any:
  record = json.loads(raw)
  return record["value"].encode("utf-8") if record["kind"] == "bytes" else record["value"]


def read_data_state(step_dir, process_index: int = 0) -> Any:
  """The data-iterator state a step holds for one process (as `get_state()` returned it)."""
  path = paths.path(step_dir) / "data" / f"process_{process_index}.json"
  if not path.is_file():
    raise UserError(f"{path} is missing: {step_dir} has no data-iterator state for JAX process {process_index}")
  return _decode_data_state(path.read_bytes())


def read_seen(step_dir, process_index: int = 0) -> dict | None:
  """The totals a step's run had consumed when it was saved (`save(..., seen=)`), None if it kept none."""
  path = paths.path(step_dir) / "data" / f"process_{process_index}.json"
  return json.loads(path.read_bytes()).get("seen") if path.is_file() else None


# --- manifest: per-file SHA-256, written after commit ---


def _sha256(path) -> str:
  h = hashlib.sha256()
  with path.open("rb") as f:
    while chunk := f.read(_HASH_CHUNK):
      h.update(chunk)
  return h.hexdigest()


def _fsync_dir(path):
  fd = os.open(os.fspath(path), os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _rmtree(p) -> None:
  try:
    p.rmtree()
  except FileNotFoundError:
    pass


def _move(src, dst) -> None:
  """A directory rename: atomic on local disk; on an object store a copy, then a delete (the step is
  quarantined because it is already bad, so a kill in between leaves two bad copies, never a good one)."""
  if not paths.is_remote(src):
    os.replace(os.fspath(src), os.fspath(dst))
    return
  paths.copy_tree(src, dst)
  _rmtree(src)


def _files(directory, prefix: str = "") -> list[tuple[str, Any]]:
  """(relative posix path, path) of every file under `directory`, sorted; epath has no recursive
  glob on object stores, so it walks one listing at a time."""
  out = []
  for p in sorted(directory.iterdir(), key=lambda p: p.name):
    rel = f"{prefix}{p.name}"
    out += _files(p, rel + "/") if p.is_dir() else [(rel, p)]
  return out


def write_manifest(step_dir) -> dict:
  """Hashes every file of a committed step directory and writes `manifest.json` atomically."""
  step_dir = paths.path(step_dir)
  files = {}
  for rel, p in _files(step_dir):
    if rel != MANIFEST and not rel.startswith(MANIFEST + "."):
      files[rel] = {"size": p.stat().length, "sha256": _sha256(p)}
  manifest = {"format": 1, "step_dir": step_dir.name, "files": files}
  if paths.is_remote(step_dir):   # one object write is atomic on an object store; there is no fsync
    (step_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
  tmp = step_dir / f"{MANIFEST}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, step_dir / MANIFEST)
  _fsync_dir(step_dir)
  return manifest


def check_step(step_dir, part: tuple[int, int] = (0, 1)) -> str | None:
  """None if the step directory is committed and every file matches its manifest; else what is wrong.

  part=(i, n): every file's presence and size are checked, but only every n-th file from the i-th
  (in manifest order) is hashed: n processes share one verification (`find_latest_good_step_together`).
  """
  step_dir = paths.path(step_dir)
  if not step_dir.is_dir():
    return f"{step_dir} is not a directory"
  for marker in (COMMIT_MARKER, STEP_METADATA):
    if not (step_dir / marker).is_file():
      return f"not committed: {step_dir / marker} is missing"
  manifest_path = step_dir / MANIFEST
  if not manifest_path.is_file():
    return f"not verified: {manifest_path} is missing (the run stopped before the manifest was written)"
  try:
    files = json.loads(manifest_path.read_text())["files"]
  except (ValueError, KeyError, TypeError) as e:
    return f"{manifest_path} is unreadable ({e})"
  mine, count = part
  for i, (rel, want) in enumerate(sorted(files.items())):
    p = step_dir / rel
    if not p.is_file():
      return f"{p} is missing (listed in {MANIFEST})"
    size = p.stat().length
    if size != want["size"]:
      return f"{p} has {size} bytes, manifest says {want['size']} (truncated or overwritten)"
    if i % count != mine:
      continue
    digest = _sha256(p)
    if digest != want["sha256"]:
      return f"{p} has SHA-256 {digest[:12]}..., manifest says {want['sha256'][:12]}... (corrupted)"
  return None


def list_steps(ckpt_dir) -> list[int]:
  """Step numbers of the final (renamed) step directories, ascending; no integrity checks."""
  ckpt_dir = paths.path(ckpt_dir)
  if not ckpt_dir.is_dir():
    return []
  return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _partial_saves(ckpt_dir: epath.Path) -> list[epath.Path]:
  if not ckpt_dir.is_dir():
    return []
  return sorted(p for p in ckpt_dir.iterdir() if _TMP_INFIX in p.name)


def find_latest_good_step(ckpt_dir) -> tuple[int | None, dict[int, str]]:
  """Newest step that is committed and verifies (resume order 1-4), read-only.

  Returns (step or None, {newer bad step: problem}). Older steps are not checked.
  """
  bad = {}
  for step in reversed(list_steps(ckpt_dir)):
    problem = check_step(paths.path(ckpt_dir) / str(step))
    if problem is None:
      return step, bad
    bad[step] = problem
  return None, bad


def find_latest_good_step_together(ckpt_dir) -> tuple[int | None, dict[int, str]]:
  """`find_latest_good_step`, called by every process at once: each hashes its share of each
  candidate step's files and the verdicts combine with a collective, so a resume reads every byte
  once in all, not once per process. One process alone: `find_latest_good_step`. The problems in the
  result are process 0's full account (re-checked there only for a step that failed)."""
  count, me = jax.process_count(), jax.process_index()
  if count == 1:
    return find_latest_good_step(ckpt_dir)
  steps = list_steps(ckpt_dir)
  seen = multihost_utils.process_allgather(np.array([len(steps), steps[-1] if steps else -1], np.int64))
  if not (seen == seen[0]).all():
    raise UserError(f"the processes see different checkpoints in {ckpt_dir} (steps, newest per process: "
                    f"{seen.tolist()}); a multi-process run needs its workdir on storage every host shares")
  bad = {}
  for step in reversed(steps):
    step_dir = paths.path(ckpt_dir) / str(step)
    problem = check_step(step_dir, part=(me, count))
    failed = multihost_utils.process_allgather(np.int32(problem is not None))
    if not failed.any():
      return step, bad
    bad[step] = (problem or check_step(step_dir)) if me == 0 else "failed verification"
  return None, bad


def _broadcast_from_primary(value: int) -> int:
  # All processes must resume from the same step even if their view of the filesystem raced.
  if jax.process_count() == 1:
    return value
  return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


# --- the manager used by the training loop ---


class CheckpointManager:
  """Async, verified checkpoints of a training run under `<workdir>/checkpoints/`.

  Resume (see the module docstring for the order):
    mngr = CheckpointManager(workdir, keep_last=3, keep_every=1000)
    step = mngr.latest_good_step()
    if step is not None:
      state, data_state = mngr.restore(step, abstract_state)   # ShapeDtypeStructs with shardings
      data_iterator.set_state(data_state)
    ... loop from step + 1; every save_every steps and on preemption:
    mngr.save(step, state, data_iterator.get_state(), config, tokenizer_dir, model_cfg=cfg)
    ... at the end: mngr.close()   (waits for the last save and its manifest)
  """

  def __init__(self, workdir, *, keep_last: int = 3, keep_every: int | None = None):
    if keep_last < 1:
      raise UserError(f"keep_last must be >= 1 (got {keep_last}): the newest good step is needed to resume")
    if keep_every is not None and keep_every < 0:
      raise UserError(f"keep_every must be a number of steps, or 0/None for none (got {keep_every})")
    self.workdir = paths.path(workdir)   # absolute (Orbax requires it), or gs://
    self.directory = self.workdir / CHECKPOINTS
    self.keep_last = keep_last
    self.keep_every = keep_every or None
    for p in _partial_saves(self.directory):
      log.warning("checkpoint: ignoring partial save %s (interrupted before commit); Orbax removes it", p)
    self._mngr = self._make_orbax()
    logging.getLogger("absl").addFilter(_quiet_storage_faults)   # Orbax logs through absl; once per filter
    self._thread: threading.Thread | None = None
    self._thread_error: BaseException | None = None
    self._last_saved: int | None = None
    self._failed: UserError | RuntimeError | None = None   # a save failure already raised once

  def _make_orbax(self) -> ocp.CheckpointManager:
    # Retention is ours (applied after verification), so Orbax keeps every step it writes.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=True, save_root_metadata=False)
    return ocp.CheckpointManager(self.directory, options=options, item_handlers=_item_handlers("state"))

  # -- saving --

  def save(self, step: int, state: Any, data_state: Any, config: Any, tokenizer_dir=None, *,
           model_cfg: Any = None, seen: dict | None = None) -> None:
    """Starts an async save of `state` (the state after `step` updates) and its companions.

    data_state: this process's data-iterator state (`get_state()`: JSON-able or JSON bytes); seen: the
    run's running totals (JSON-able, e.g. tokens consumed), kept with it (`read_seen`).
    config: the training config (ConfigDict or dict); model_cfg: the LCBMConfig dataclass (needed by
    `artifacts.load_for_inference`); tokenizer_dir: directory holding tokenizer.model (or the file itself).
    """
    self._join_manifest_thread()
    step = int(step)
    if step == self._last_saved:   # e.g. a periodic save and a preemption save at the same step
      return
    if step in list_steps(self.directory):
      raise UserError(f"checkpoint step {step} already exists in {self.directory}; "
                      "resume with latest_good_step() instead of re-running from scratch into the same workdir")
    data_files = {f"process_{jax.process_index()}.json": _encode_data_state(data_state, seen)}
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=FilesSave(data_files, every_process=True),
        config=ocp.args.JsonSave(_config_to_dict(config)),
        model=ocp.args.JsonSave(_model_to_dict(model_cfg)),
        tokenizer=FilesSave(_tokenizer_files(tokenizer_dir)))
    try:
      self._mngr.save(step, args=args, force=True)
    except Exception as e:  # noqa: BLE001  (Orbax writes the small items before returning)
      raise self._save_failed(step, e) from e
    self._last_saved = step
    self._thread = threading.Thread(target=self._finish_save, args=(step,), name=f"lcbm-manifest-{step}",
                                    daemon=False)
    self._thread.start()

  def _finish_save(self, step: int):
    try:
      self._wait_for_orbax(step)
      if jax.process_index() != 0:
        return
      step_dir = self.directory / str(step)
      if not (step_dir / COMMIT_MARKER).is_file():
        log.warning("checkpoint: step %d did not commit (%s missing); no manifest written", step,
                    step_dir / COMMIT_MARKER)
        return
      write_manifest(step_dir)
      self._apply_retention(newest=step)
    except BaseException as e:  # re-raised in the main thread by _join_manifest_thread
      self._thread_error = e

  def _apply_retention(self, newest: int):
    keep = {s for s in list_steps(self.directory) if (self.directory / str(s) / MANIFEST).is_file()}
    newest_good = sorted(keep)[-self.keep_last:]
    for s in list_steps(self.directory):
      if s >= newest or s in newest_good or (self.keep_every and s % self.keep_every == 0 and s in keep):
        continue
      step_dir = self.directory / str(s)
      log.info("checkpoint: retention removes step %d", s)
      # Manifest first: a kill mid-rmtree then leaves an unverified step, never a wrongly verified one.
      (step_dir / MANIFEST).unlink(missing_ok=True)
      _rmtree(step_dir)

  def _wait_for_orbax(self, step: int | None):
    try:
      self._mngr.wait_until_finished()
    except Exception as e:  # noqa: BLE001  (the background write or commit of `step` failed)
      if self._failed is None:   # Orbax re-raises a failure at every wait; it is reported once
        raise self._save_failed(step if step is not None else self._last_saved, e) from e

  def _join_manifest_thread(self):
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._thread_error is not None:
      err, self._thread_error = self._thread_error, None
      if err is self._failed:   # already the error to report (_wait_for_orbax in the thread)
        raise err
      raise self._save_failed(self._last_saved, err) from err

  def raise_if_save_failed(self) -> None:
    """Raises a background save's failure once its thread is done; never blocks. The loop calls this
    every step, so a full disk stops the run at once rather than at the next save."""
    if self._thread is not None and not self._thread.is_alive():
      self._join_manifest_thread()

  def _save_failed(self, step: int | None, err: BaseException) -> UserError | RuntimeError:
    """The error to raise for a failed save: a UserError for a storage fault (read-only or full
    filesystem, no permission, quota), naming the step that stays the resume point; else a bug."""
    fault = _storage_fault(err)
    if fault is None:
      self._failed = RuntimeError(f"checkpoint save of step {step} failed: {err!r}")
    else:
      verified = [s for s in list_steps(self.directory) if (self.directory / str(s) / MANIFEST).is_file()]
      resume = (f"step {verified[-1]}, the newest verified one, stays the resume point" if verified
                else "no step is verified yet, so a rerun starts from scratch")
      self._failed = UserError(f"checkpoint step {step} could not be written to {self.directory}: {fault}; "
                               f"{resume}. Free space or make the directory writable, then rerun the same "
                               "command")
    return self._failed

  def wait_until_finished(self):
    """Blocks until the last save is committed, its manifest written and retention applied."""
    self._wait_for_orbax(None)
    self._join_manifest_thread()

  def close(self):
    try:
      self.wait_until_finished()
    finally:
      try:
        self._mngr.close()
      except Exception:  # noqa: BLE001  (a failure already raised: Orbax repeats it at close)
        if self._failed is None:
          raise

  # -- resuming --

  def latest_good_step(self) -> int | None:
    """Newest committed and verified step (resume order 1-4), or None to start fresh.

    Each newer step that fails is named in a warning and moved to `<workdir>/checkpoints_quarantine/`.
    """
    self.wait_until_finished()
    step, bad = find_latest_good_step_together(self.directory)   # every process hashes its share
    if jax.process_index() == 0:
      for s, problem in sorted(bad.items(), reverse=True):
        dest = self._quarantine(s, problem)
        log.warning("checkpoint: skipping step %d: %s; moved to %s", s, problem, dest)
      if bad:
        log.warning("checkpoint: %s", "no good step left: starting from scratch" if step is None
                    else f"resuming from the previous good step {step}")
    step = _broadcast_from_primary(-1 if step is None else step)
    self._mngr.reload()   # Orbax must forget the quarantined steps
    return None if step < 0 else step

  def _quarantine(self, step: int, problem: str) -> epath.Path:
    qdir = self.workdir / QUARANTINE
    qdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%dT%H%M%S')
    dest = qdir / f"{step}.{stamp}"
    n = 0
    while dest.exists():   # the same step quarantined twice within a second
      n += 1
      dest = qdir / f"{step}.{stamp}.{n}"
    _move(self.directory / str(step), dest)
    (qdir / f"{dest.name}.reason.txt").write_text(problem + "\n")
    return dest

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """(state, data_state) of `step`, with state placed as `abstract_state` says (resume order 5-6).

    abstract_state: the TrainState of `jax.ShapeDtypeStruct`s with the *target* shardings, e.g.
    `jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), jax.eval_shape(init), shardings)`.
    """
    step_dir = self.directory / str(step)
    _check_tree_matches(step_dir, "state", abstract_state)
    restored = _orbax_restore(lambda: self._mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=FilesRestore())), step_dir)
    name = f"process_{jax.process_index()}.json"
    if name not in restored.data:
      raise UserError(f"{step_dir / 'data'} has no data-iterator state for JAX process "
                      f"{jax.process_index()} (saved with {len(restored.data)} processes); resume with the same "
                      "number of processes")
    return restored.state, _decode_data_state(restored.data[name])


class _QuietStorageFaults(logging.Filter):
  """Drops Orbax's own logs of a save that storage refused (each with its traceback, from every
  thread that waited on it): the manager reports that failure once, as a UserError. Orbax's logs of
  any other failure stay."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not ("orbax" in record.pathname and exc is not None and _storage_fault(exc) is not None)


_quiet_storage_faults = _QuietStorageFaults()


# Errnos that mean the storage refused the write; anything else failing a save is a bug.
_STORAGE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO)


def _storage_fault(err: BaseException) -> str | None:
  """'Read-only file system (EROFS) at PATH' when `err` or an error it came from is a storage
  fault, else None. TensorStore reports its failed writes as ValueError carrying the OS's text."""
  seen = set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
      where = f" at {err.filename}" if err.filename else ""
      return f"{os.strerror(err.errno)} ({errno.errorcode[err.errno]}){where}"
    for code in _STORAGE_ERRNOS:
      if os.strerror(code) in str(err):
        return f"{os.strerror(code)} ({errno.errorcode[code]}): {str(err).splitlines()[0][:300]}"
    err = err.__cause__ or err.__context__
  return None


def _orbax_restore(fn, step_dir: epath.Path):
  try:
    return fn()
  except (ValueError, FileNotFoundError, KeyError, OSError) as e:
    raise UserError(f"cannot restore checkpoint {step_dir}: {type(e).__name__}: {str(e).splitlines()[0][:300]}; "
                    "the checkpoint does not match the model/config or is damaged") from e


def _path_str(path) -> str:
  # Orbax metadata turns namedtuples and dataclasses into dicts: compare by key names only.
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return "/" + "/".join(parts)


def _check_tree_matches(step_dir: epath.Path, item: str, abstract: Any, partial: bool = False):
  """UserError naming the first leaf whose path, shape or dtype differs from the checkpoint.

  partial: `abstract` may be a subtree (extra leaves in the checkpoint are fine).
  """
  try:
    saved = ocp.StandardCheckpointHandler().metadata(step_dir / item).tree
  except (FileNotFoundError, ValueError, OSError) as e:
    raise UserError(f"{step_dir / item}: cannot read the array metadata ({e}); the checkpoint is damaged") from e
  want = {_path_str(k): v for k, v in jax.tree_util.tree_flatten_with_path(abstract)[0]}
  have = {_path_str(k): v for k, v in jax.tree_util.tree_flatten_with_path(saved)[0]}
  missing = sorted(set(want) - set(have))
  extra = [] if partial else sorted(set(have) - set(want))
  if missing or extra:
    raise UserError(f"{step_dir / item} does not match the model: missing {missing[:3]}, unexpected {extra[:3]}; "
                    "was it written with a different model config?")
  for key, w in want.items():
    h = have[key]
    if jax.dtypes.issubdtype(w.dtype, jax.dtypes.prng_key):   # stored as its raw key data
      w = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(w.shape, w.dtype))
    if tuple(w.shape) != tuple(h.shape) or np.dtype(w.dtype) != np.dtype(h.dtype):
      raise UserError(f"{step_dir / item}: {key} is {h.dtype}{list(h.shape)} in the checkpoint but "
                      f"the model expects {w.dtype}{list(w.shape)}; use the config it was trained with")


# --- params-only checkpoints, and reading one step's parameters and configs ---


# Params-only checkpoints are written in chunks of at most this size, so reading one parameter holds
# the parameter and one chunk being decoded, not two copies of the largest parameter.
PARAMS_CHUNK_BYTES = 8 << 20


def save_params(out_dir, cfg: Any, params: Any, tokenizer_dir=None, *, config: Any = None) -> epath.Path:
  """Writes a params-only checkpoint (imports from HF, exports) with a manifest; returns its path."""
  out_dir = paths.path(out_dir)
  if out_dir.exists() and any(out_dir.iterdir()):
    raise UserError(f"{out_dir} exists and is not empty; choose a new --out directory")
  handler = ocp.CompositeCheckpointHandler(**{k: v for k, v in _item_handlers("params").items() if k != "data"})
  with ocp.Checkpointer(handler) as ckptr:
    ckptr.save(out_dir, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params, save_args=jax.tree.map(
            lambda _: ocp.SaveArgs(chunk_byte_size=PARAMS_CHUNK_BYTES), params)),
        config=ocp.args.JsonSave(_config_to_dict(config)),
        model=ocp.args.JsonSave(_model_to_dict(cfg)),
        tokenizer=FilesSave(_tokenizer_files(tokenizer_dir))), force=True)
  if jax.process_index() == 0:
    write_manifest(out_dir)
  return paths.native(out_dir)


def read_json_item(step_dir, item: str) -> dict:
  """The `config` (training config) or `model` (LCBMConfig) JSON item of a step or params-only directory."""
  return json.loads((paths.path(step_dir) / item / "metadata").read_text())


def release_freed_host_memory() -> None:
  """Hands memory freed by Python, NumPy and TensorStore back to the OS (glibc's `malloc_trim`).

  Loading a model parameter by parameter frees a large transient buffer after each one; glibc keeps
  such blocks for reuse once its adaptive mmap threshold has grown, so without a trim the host's peak
  memory would grow by every transient, not only the largest. A no-op where there is no glibc.
  """
  global _malloc_trim
  if _malloc_trim is None:
    try:
      _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
      _malloc_trim = False
  if _malloc_trim:
    _malloc_trim(0)


_malloc_trim = None


def restore_params(step_dir, abstract_params: Any) -> Any:
  """The parameters of a verified step directory, placed as `abstract_params` says, in one Orbax restore.

  A training step holds them as `TrainState.params` (only those are read), a params-only checkpoint
  (`save_params`) as its `params` item. abstract_params: `jax.ShapeDtypeStruct` leaves carrying the
  target shardings; their shapes are checked against the checkpoint first (UserError naming the leaf).
  Initialising a large model reads parameter by parameter instead (`param_readers` + `place`).
  """
  step_dir = paths.path(step_dir)
  item = _params_item(step_dir)
  wrap = (lambda t: t) if item == "params" else (lambda t: {"params": t})
  _check_tree_matches(step_dir, item, wrap(abstract_params), partial=item == "state")
  target = wrap(abstract_params)
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  with ocp.PyTreeCheckpointer() as ckptr:
    restored = _orbax_restore(lambda: ckptr.restore(step_dir / item, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True)), step_dir)
  return restored if item == "params" else restored["params"]


def _params_item(step_dir: epath.Path) -> str:
  return "params" if (step_dir / "params").is_dir() else "state"


def param_readers(step_dir, abstract_params: Any) -> dict[str, Callable[[], ts.TensorStore]]:
  """Our path ("llm/embed/embedding") -> a function opening that parameter of a verified step directory
  as a TensorStore array (dtype as stored, nothing read yet), for `place`.

  The OCDBT arrays are read through TensorStore directly, without a cache, shard by shard and chunk
  by chunk: an Orbax restore holds its read buffer and the placed copy of a parameter together, which
  for the largest one is more than initialising a model can afford (the sharded-init memory bound).
  Leaf shapes and dtypes are checked against `abstract_params` first (UserError naming the leaf).
  """
  step_dir = paths.path(step_dir)
  item = _params_item(step_dir)
  prefix = () if item == "params" else ("params",)
  _check_tree_matches(step_dir, item, abstract_params if not prefix else {"params": abstract_params},
                      partial=bool(prefix))
  try:
    meta = json.loads((step_dir / item / "_METADATA").read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"{step_dir / item}: cannot read the array metadata ({e}); the checkpoint is damaged") from e
  names = {tuple(str(k["key"]) for k in leaf["key_metadata"]) for leaf in meta["tree_metadata"].values()}
  if not meta.get("use_ocdbt", False):
    raise UserError(f"{step_dir / item} was not written with OCDBT; re-save it with this version of lcbm-jax")
  driver = "zarr3" if meta.get("use_zarr3") else "zarr"
  base = f"{step_dir / item}/" if paths.is_remote(step_dir) else f"file://{step_dir / item}/"
  context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})

  def reader(name: str):
    def read() -> ts.TensorStore:
      try:
        return ts.open({"driver": driver, "kvstore": {"driver": "ocdbt", "base": base, "path": name}},
                       open=True, read=True, context=context).result()
      except ValueError as e:   # TensorStore's error for a missing or corrupt array
        raise UserError(f"cannot read {name} from {step_dir / item}: {str(e).splitlines()[0][:300]}; "
                        "the checkpoint is damaged") from e
    return read

  readers = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(abstract_params)[0]:
    ours = _path_str(path).lstrip("/")
    keys = prefix + tuple(ours.split("/"))
    if keys not in names:
      raise UserError(f"{step_dir / item} has no array {'/'.join(keys)}")
    readers[ours] = reader(".".join(keys))
  return readers


def _read_chunk_by_chunk(arr: ts.TensorStore, index: tuple = ()) -> np.ndarray:
  """arr[index], its chunks read in turn into one output: the host holds the output and one chunk's
  buffers, where one whole read would decode every chunk at once."""
  view = arr[index].translate_to[0] if index else arr
  out = np.empty(view.shape, view.dtype.numpy_dtype)
  chunk = arr.chunk_layout.read_chunk.shape or arr.shape
  for origin in itertools.product(*(range(0, n, c) for n, c in zip(view.shape, chunk))):
    block = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, chunk, view.shape))
    try:
      out[block] = view[block].read().result()
    except ValueError as e:   # a missing or corrupt chunk
      raise UserError(f"cannot read {arr.kvstore.url}: {str(e).splitlines()[0][:300]}; the checkpoint is damaged") from e
  return out


def place(readers: dict, shardings, dtypes=None) -> dict:
  """Readers (our path -> a function returning a host array, or an open TensorStore array read here shard
  by shard) -> params as jax.Arrays placed with `shardings` (a params-shaped pytree) and cast to
  `dtypes` (params-shaped, or None to keep the stored ones), one parameter at a time: the host holds at
  most one parameter besides what the devices hold, never the whole model."""
  params: dict = {}
  for path, read in readers.items():
    value = read()
    dtype = None if dtypes is None else np.dtype(_tree_get(dtypes, path))
    sharding = _tree_get(shardings, path)
    if isinstance(value, ts.TensorStore):
      # Straight from storage, shard by shard: the host holds one shard, not the whole parameter.
      def shard(index, value=value, dtype=dtype):
        x = _read_chunk_by_chunk(value, index)
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
      _tree_set(params, path, jax.make_array_from_callback(tuple(value.shape), sharding, shard))
    else:
      if dtype is not None and value.dtype != dtype:
        value = value.astype(dtype)
      _tree_set(params, path, jax.make_array_from_callback(value.shape, sharding, lambda index: value[index]))
    del value
    release_freed_host_memory()
  return params


def _tree_get(tree, path: str):
  for p in path.split("/"):
    tree = tree[p]
  return tree


def _tree_set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split("/")
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value
