"""Where a run's files live: a local directory or an object store (`gs://`), one path type for both.

Workdirs, data dirs and `--checkpoint` paths go through `etils.epath` (what Orbax itself uses), so
checkpoints, manifests, their verification and quarantine moves work the same on a TPU VM's bucket
as on local disk. `gs://` needs `gcsfs` (`pip install 'lcbm-jax[gcs]'`); TensorFlow is never imported.

What an object store cannot do, and what happens instead:
- append to a file, or train a SentencePiece model into it: a remote workdir's own small files
  (metrics.jsonl, tensorboard/, the tokenizer the run trains, summary.json, metrics.png) are written
  to a local mirror (`mirror_dir`) and copied up after every checkpoint and at the end (`upload`);
- `array_record` reads and writes local files only (without TensorFlow): a remote data dir is copied
  to the local cache once (`local_data_dir`) and read from there.
Renames are not atomic on an object store; a single object write is, which is what a manifest needs.

Corpus readers and `lcbm data build` (local or on Beam workers) name their files through the os.path
look-alikes at the end (`exists`, `isdir`, `join`, `open_read`, ...): a local path goes to os.path
unchanged (the strings in quarantine reports stay what they were), a gs:// one to epath.
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib
import posixpath
from typing import IO

from etils import epath

from lcbm_jax.errors import UserError

REMOTE_SCHEMES = ("gs://",)


def is_remote(p) -> bool:
  return str(p).startswith(REMOTE_SCHEMES)


def path(p) -> epath.Path:
  """`p` as an absolute `epath.Path` (Orbax needs absolute paths); a `gs://` path as it is."""
  s = os.fspath(p) if not isinstance(p, epath.Path) else str(p)
  if is_remote(s):
    try:
      import gcsfs  # noqa: F401  (epath's gs:// backend)
    except ImportError:
      raise UserError(f"{s}: gs:// paths need gcsfs; pip install 'lcbm-jax[gcs]' (or pip install gcsfs)") from None
    return epath.Path(s)
  return epath.Path(os.path.abspath(s))


def native(p):
  """A local `epath.Path` as a `pathlib.Path` (what callers of our API hold); a remote one as it is."""
  return p if is_remote(p) else pathlib.Path(os.fspath(p))


def cache_root() -> pathlib.Path:
  return pathlib.Path(os.environ.get("LCBM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "lcbm")))


def cache_key(remote: str) -> str:
  """A file name for a remote path's local copy: readable, and unique by a hash."""
  name = remote.rstrip("/").split("://", 1)[-1].replace("/", "_")[-80:]
  return f"{name}-{hashlib.sha256(remote.encode()).hexdigest()[:12]}"


def mirror_dir(workdir: str) -> str:
  """Where a run writes its own small files: the workdir itself, or for a remote one a local mirror
  seeded from it (a resumed run continues its metrics.jsonl and finds its tokenizer)."""
  if not is_remote(workdir):
    return workdir
  local = cache_root() / "workdirs" / cache_key(workdir)
  local.mkdir(parents=True, exist_ok=True)
  remote = path(workdir)
  if remote.is_dir():
    copy_tree(remote, epath.Path(str(local)), skip=("checkpoints", "checkpoints_quarantine"))
  return str(local)


def upload(local_dir: str, workdir: str) -> None:
  """Copies a mirror's files up to its remote workdir (no-op for a local workdir)."""
  if is_remote(workdir):
    copy_tree(epath.Path(local_dir), path(workdir), skip=())


def local_data_dir(data_dir: str) -> str:
  """A data dir array_record can read: itself, or a remote one copied once into the local cache."""
  if not is_remote(data_dir):
    return data_dir
  remote = path(data_dir)
  if not remote.is_dir():
    raise UserError(f"data dir {data_dir} does not exist; build one with `lcbm data build` and copy it there")
  local = cache_root() / "data" / cache_key(data_dir)
  done = local / ".complete"
  if not done.exists():
    copy_tree(remote, epath.Path(str(local)), skip=())
    done.write_text(data_dir + "\n")
  return str(local)


def copy_tree(src: epath.Path, dst: epath.Path, skip: tuple[str, ...] = ()) -> None:
  """Copies every file under `src` to `dst` (local or remote, either way), except top-level `skip` names."""
  dst.mkdir(parents=True, exist_ok=True)
  for p in src.iterdir():
    if p.name in skip:
      continue
    if p.is_dir():
      copy_tree(p, dst / p.name, ())
    else:
      (dst / p.name).write_bytes(p.read_bytes())


# ---------------------------------------------------------------------------------------------
# os.path for paths that may be URLs (local: os.path itself; remote: epath, posixpath on the key).

def _split(p: str) -> tuple[str, str]:
  scheme = next(s for s in REMOTE_SCHEMES if p.startswith(s))
  return scheme, p[len(scheme):]


def exists(p) -> bool:
  p = os.fspath(p)
  return path(p).exists() if is_remote(p) else os.path.exists(p)


def isdir(p) -> bool:
  p = os.fspath(p)
  return path(p).is_dir() if is_remote(p) else os.path.isdir(p)


def isfile(p) -> bool:
  p = os.fspath(p)
  return path(p).is_file() if is_remote(p) else os.path.isfile(p)


def listdir(p) -> list[str]:
  p = os.fspath(p)
  return [c.name for c in path(p).iterdir()] if is_remote(p) else os.listdir(p)


def join(p, *parts: str) -> str:
  return os.path.join(os.fspath(p), *parts)   # a URL joins as a POSIX path


def dirname(p) -> str:
  return os.path.dirname(os.fspath(p))


def normpath(p) -> str:
  """os.path.normpath; for a URL, `..` and `.` folded in its key (the bucket stays: `gs://b/..` is `gs://b`)."""
  p = os.fspath(p)
  if not is_remote(p):
    return os.path.normpath(p)
  scheme, rest = _split(p)
  bucket, _, key = rest.partition("/")
  key = posixpath.normpath("/" + key).lstrip("/")
  return f"{scheme}{bucket}/{key}" if key else f"{scheme}{bucket}"


def abspath(p) -> str:
  p = os.fspath(p)
  return normpath(p) if is_remote(p) else os.path.abspath(p)


def open_read(p) -> IO[bytes]:
  """`p` opened for reading bytes: a local file, or an object streamed through gcsfs behind a
  standard buffered reader (gcsfs's own file lacks `readline(limit)`, which bounded line reads need)."""
  p = os.fspath(p)
  return io.BufferedReader(path(p).open("rb"), 1 << 20) if is_remote(p) else open(p, "rb")
