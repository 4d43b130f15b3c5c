"""Hub ids resolve through huggingface_hub's own cache, offline, and fail in one line when they cannot.

The cache is laid out by hand exactly as huggingface_hub writes it (its version 2.4 offers no way to
add files to the cache without a server): `models--OWNER--NAME/refs/main` holds the commit hash,
`blobs/` the contents named by their sha256 (the Hub's LFS etag), and `snapshots/<commit>/PATH` are
relative symlinks into `blobs/`. huggingface_hub's own `scan_cache_dir` must accept it, so the test
cannot drift into a layout only our code understands. Everything runs in subprocesses: the Hub
library reads HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"model_type": "llava"}\n', "tokenizer.json": b'{"version": "1.0"}\n',
         "model.safetensors": b"not really weights, only bytes to link\n"}


def _populate(cache, repo_id: str, files: dict, commit: str = COMMIT, ref: str = "main") -> str:
  """Writes `files` as huggingface_hub caches a download of `repo_id` at `ref` -> `commit`."""
  storage = cache / ("models--" + repo_id.replace("/", "--"))
  (storage / "blobs").mkdir(parents=True)
  (storage / "refs").mkdir()
  (storage / "refs" / ref).write_text(commit)   # no newline: huggingface_hub writes the bare hash
  snapshot = storage / "snapshots" / commit
  snapshot.mkdir(parents=True)
  for name, data in files.items():
    blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
    blob.write_bytes(data)
    (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
  return str(snapshot)


def _env(cache, **extra):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1",
             HF_HUB_DISABLE_TELEMETRY="1", **extra)
  env.pop("HF_HOME", None)
  return env


def _python(code: str, env) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=120)


_RESOLVE = ("from lcbm_jax import hub\nfrom lcbm_jax.errors import UserError\n"
            "try:\n  print(hub.resolve({spec!r}, what={what!r}))\n"
            "except UserError as e:\n  print('UserError:', e)\n")


def _resolve(spec: str, env, what: str = "--hf-dir") -> str:
  out = _python(_RESOLVE.format(spec=spec, what=what), env)
  assert out.returncode == 0, out.stderr
  return out.stdout.strip()


@pytest.fixture
def cache(tmp_path):
  c = tmp_path / "hub"
  c.mkdir()
  return c


def test_the_hand_made_cache_is_one_huggingface_hub_recognises(cache):
  snapshot = _populate(cache, "owner/name", FILES)
  scan = _python("import json\nfrom huggingface_hub import scan_cache_dir\ninfo = scan_cache_dir()\n"
                 "print(json.dumps([[r.repo_id, r.repo_type, [[v.commit_hash, sorted(v.refs), "
                 "sorted(f.file_name for f in v.files)] for v in r.revisions]] for r in info.repos]))\n"
                 "assert not info.warnings, info.warnings\n", _env(cache))
  assert scan.returncode == 0, scan.stderr
  assert json.loads(scan.stdout) == [["owner/name", "model", [[COMMIT, ["main"], sorted(FILES)]]]]
  assert open(os.path.join(snapshot, "config.json"), "rb").read() == FILES["config.json"]


def test_a_cached_hub_id_resolves_offline_to_its_snapshot(cache):
  snapshot = _populate(cache, "owner/name", FILES)
  assert _resolve("owner/name", _env(cache)) == snapshot
  assert _resolve(f"owner/name@{COMMIT}", _env(cache)) == snapshot   # a commit needs no ref
  assert _resolve("owner/name@main", _env(cache)) == snapshot


def test_local_paths_win_and_missing_ones_are_named(cache, tmp_path):
  local = tmp_path / "owner" / "name"   # a relative path shaped like an id: the disk is asked first
  local.mkdir(parents=True)
  env = _env(cache)
  out = subprocess.run([sys.executable, "-c", _RESOLVE.format(spec="owner/name", what="--hf-dir")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.stdout.strip() == "owner/name", out.stderr
  assert _resolve(str(local), env) == str(local)
  assert _resolve("gs://bucket/run", env) == "gs://bucket/run"   # remote paths go to their reader
  missing = _resolve(str(tmp_path / "nope"), env)
  assert missing == f"UserError: --hf-dir: path {str(tmp_path / 'nope')!r} does not exist"


def test_an_id_missing_from_the_cache_names_the_local_directory_alternative(cache):
  _populate(cache, "owner/name", FILES)
  text = _resolve("owner/other", _env(cache))
  assert "\n" not in text
  assert text.startswith("UserError: --hf-dir: cannot reach the Hugging Face Hub for 'owner/other' "
                         "(HF_HUB_OFFLINE is set, and it is not in the cache at ")
  assert str(cache) in text and "hf download owner/other --local-dir DIR" in text
  assert "pass --hf-dir=DIR (a local directory)" in text
  revision = _resolve("owner/name@v2", _env(cache))   # a revision the cache never saw
  assert "not in the cache" in revision and "at revision 'v2'" in revision and "--revision v2" in revision
  key = _resolve("owner/other", _env(cache), what="init.checkpoint")   # a config key names its override
  assert key.startswith("UserError: init.checkpoint: cannot reach") and "pass --config.init.checkpoint=DIR" in key


def test_no_network_without_offline_mode_gives_the_same_one_line_error(cache):
  # A closed local port stands in for a machine without network: the connection fails at once.
  env = _env(cache, HF_ENDPOINT="http://127.0.0.1:9")
  del env["HF_HUB_OFFLINE"]
  text = _resolve("owner/other", env)
  assert text.startswith("UserError: --hf-dir: cannot reach the Hugging Face Hub for 'owner/other' "
                         "(the Hub cannot be reached, and it is not in the cache at "), text
  _populate(cache, "owner/name", FILES)
  assert _resolve("owner/name", env).endswith(COMMIT)   # a cached id still resolves


def test_import_hf_with_an_unreachable_hub_id_is_one_line_and_exit_2(cache, tmp_path):
  out = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", "import-hf", "--hf-dir", "owner/missing",
                        "--out", str(tmp_path / "out")], cwd=REPO, env=_env(cache, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("lcbm: error: --hf-dir: cannot reach the Hugging Face Hub "
                                                 "for 'owner/missing'"), out.stderr
  assert not (tmp_path / "out").exists()
  out = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", "import-hf", "--vision-dir", str(tmp_path / "clip"),
                        "--llm-dir", "owner/llama", "--out", str(tmp_path / "out")], cwd=REPO,
                       env=_env(cache, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
  assert out.returncode == 2 and out.stderr.strip() == (
      f"lcbm: error: --vision-dir: path {str(tmp_path / 'clip')!r} does not exist"), out.stderr
