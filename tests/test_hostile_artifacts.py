"""Hostile model artifacts (issue 10, item 9): a damaged or malicious safetensors header, config.json,
safetensors index or stored model config is refused with one line, `lcbm: error: ...`, exit 2, no
traceback, from the headers and `jax.eval_shape` alone: every run is a real `lcbm` process under a
4 GiB address-space limit and a timeout, so allocating what a header or a config claims would fail the
test. No pickle is ever loaded: the pickles here create a marker file when unpickled.

One tiny transformers-written LLaVA directory per module; each case copies it and damages the copy.
"""
from __future__ import annotations

import builtins
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import pytest

import hf_helpers

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
_AS_LIMIT = 4 << 30
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp("hostile")
  sp = hf_helpers.default_sentencepiece_dir(str(root / "sp"))
  return pathlib.Path(hf_helpers.save_hf_llava_dir(str(root / "hf"), sp))


# `python -m lcbm_jax.cli ARGS` with the address-space limit set first, in the child itself (a
# preexec_fn would run Python between fork and exec of this multithreaded JAX process).
_LIMITED_CLI = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
                "runpy.run_module('lcbm_jax.cli', run_name='__main__', alter_sys=True)").format(_AS_LIMIT)


def _lcbm(*args) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-c", _LIMITED_CLI, *map(str, args)], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=180)


def _error_line(proc) -> str:
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
  assert "Traceback" not in proc.stderr, proc.stderr
  assert sum(line.startswith("lcbm: error:") for line in lines) == 1, proc.stderr
  assert lines[-1].startswith("lcbm: error: "), proc.stderr
  return lines[-1]


# ---------------------------------------------------------------- damage


def _split(path: pathlib.Path) -> tuple[dict, bytes]:
  raw = path.read_bytes()
  n = int.from_bytes(raw[:8], "little")
  return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path: pathlib.Path, header: bytes, data: bytes, length: int | None = None) -> None:
  path.write_bytes((len(header) if length is None else length).to_bytes(8, "little") + header + data)


def _tensors(header: dict) -> list[str]:
  """Tensor names in data order."""
  return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _header(edit):
  """Damage: `edit(header)` changes the JSON header of model.safetensors (the data stays as it was)."""
  def damage(d: pathlib.Path):
    header, data = _split(d / _WEIGHTS)
    edit(header)
    _write(d / _WEIGHTS, json.dumps(header).encode(), data)
  return damage


def _raw_header(raw: bytes, length: int | None = None):
  """Damage: model.safetensors' header replaced by `raw` bytes (its length field by `length`)."""
  def damage(d: pathlib.Path):
    _, data = _split(d / _WEIGHTS)
    _write(d / _WEIGHTS, raw, data, length)
  return damage


def _first(h: dict) -> dict:
  return h[_tensors(h)[0]]


def _one_dim(h: dict) -> dict:
  return next(h[k] for k in _tensors(h) if len(h[k]["shape"]) == 1)


def _two_dim(h: dict) -> dict:
  return next(h[k] for k in _tensors(h) if len(h[k]["shape"]) == 2)


def _overlap(h: dict) -> None:
  """The second of two same-sized tensors pointed at the first one's bytes."""
  seen = {}
  for k in _tensors(h):
    size = h[k]["data_offsets"][1] - h[k]["data_offsets"][0]
    if size in seen:
      h[k]["data_offsets"] = list(h[seen[size]]["data_offsets"])
      return
    seen[size] = k
  raise AssertionError("no two tensors of one size")


def _set(d: dict, where: str, value) -> None:
  *parents, leaf = where.split(".")
  for p in parents:
    d = d[p]
  d[leaf] = value


def _config(where: str, value):
  """Damage: config.json's `where` (dotted, e.g. text_config.hidden_size) set to `value`."""
  def damage(d: pathlib.Path):
    cfg = json.loads((d / "config.json").read_text())
    _set(cfg, where, value)
    (d / "config.json").write_text(json.dumps(cfg))
  return damage


def _config_text(text: str):
  def damage(d: pathlib.Path):
    (d / "config.json").write_text(text)
  return damage


def _index(shard_name):
  """Damage: model.safetensors moved where `shard_name(d)` says, named by an index. A copy of the
  valid file sits at each outside place, so following the name would make the import succeed."""
  def damage(d: pathlib.Path):
    header, _ = _split(d / _WEIGHTS)
    name = shard_name(d)
    outside = (d / name).resolve() if not os.path.isabs(name) else pathlib.Path(name)
    shutil.copy(d / _WEIGHTS, outside)
    (d / _WEIGHTS).unlink()
    (d / _INDEX).write_text(json.dumps({"metadata": {}, "weight_map": {k: name for k in _tensors(header)}}))
  return damage


def _index_text(text: str):
  def damage(d: pathlib.Path):
    shutil.move(d / _WEIGHTS, d / "model-00001-of-00001.safetensors")
    (d / _INDEX).write_text(text)
  return damage


def _two_shards(d: pathlib.Path) -> None:
  """Every tensor in two shards (the index names each once; the files disagree on nothing but exist)."""
  header, _ = _split(d / _WEIGHTS)
  names = _tensors(header)
  shutil.copy(d / _WEIGHTS, d / "a.safetensors")
  shutil.move(d / _WEIGHTS, d / "b.safetensors")
  (d / _INDEX).write_text(json.dumps({"weight_map": {k: "ab"[i % 2] + ".safetensors" for i, k in enumerate(names)}}))


def _marker(d: pathlib.Path) -> pathlib.Path:
  return d.parent / f"{d.name}.unpickled"


def _evil_pickle(d: pathlib.Path) -> bytes:
  """A pickle that creates `_marker(d)` when loaded (what torch.load would do with it)."""
  class Evil:
    def __reduce__(self):
      return builtins.open, (str(_marker(d)), "w")
  return pickle.dumps(Evil())


def _pickle_only(d: pathlib.Path) -> None:
  (d / _WEIGHTS).unlink()
  (d / "pytorch_model.bin").write_bytes(_evil_pickle(d))


def _index_names_pickle(d: pathlib.Path) -> None:
  header, _ = _split(d / _WEIGHTS)
  (d / _WEIGHTS).unlink()
  (d / "pytorch_model.bin").write_bytes(_evil_pickle(d))
  (d / _INDEX).write_text(json.dumps({"weight_map": {k: "pytorch_model.bin" for k in _tensors(header)}}))


_INVALID = "not a valid safetensors file"
_MISMATCH = "does not match the weights"
_RANGE = "must be a positive int up to"

# kind -> (damage, a phrase of the error that names the check that caught it)
KINDS = {
    # safetensors header: sizes and offsets from the header alone, checked against the file's size.
    "header_length_2**60": (_raw_header(b"{}", length=2**60), _INVALID),
    "header_length_past_end": (_raw_header(b"{}", length=10**6), _INVALID),
    "header_not_json": (_raw_header(b"\xff{not json"), _INVALID),
    "header_nested_too_deep": (_raw_header(b"[" * 200_000 + b"]" * 200_000), _INVALID),
    "header_not_an_object": (_raw_header(b"[1, 2]"), _INVALID),
    "offsets_beyond_file": (_header(lambda h: _first(h).update(
        data_offsets=[o + 2**40 for o in _first(h)["data_offsets"]])), _INVALID),
    "shape_exceeds_file": (_header(lambda h: _first(h).update(
        dtype="F32", shape=[2**20, 2**20], data_offsets=[0, 2**42])), _INVALID),
    "shape_product_overflows_int64": (_header(lambda h: _first(h).update(
        dtype="F32", shape=[2**32] * 3, data_offsets=[0, 0])), _INVALID),
    "shape_negative": (_header(lambda h: _two_dim(h).update(shape=[-d for d in _two_dim(h)["shape"]])), _INVALID),
    "shape_not_integer": (_header(lambda h: _one_dim(h).update(shape=[_one_dim(h)["shape"][0] + 0.5])), _INVALID),
    "shape_string": (_header(lambda h: _one_dim(h).update(shape=[str(_one_dim(h)["shape"][0])])), _INVALID),
    "offsets_negative": (_header(lambda h: _first(h).update(
        data_offsets=[o - 8 for o in _first(h)["data_offsets"]])), _INVALID),
    "offsets_not_integer": (_header(lambda h: _first(h).update(
        data_offsets=[float(o) for o in _first(h)["data_offsets"]])), _INVALID),
    "offsets_overlap": (_header(_overlap), "overlaps"),
    "dtype_unknown": (_header(lambda h: _first(h).update(dtype="F8_E9M9")), "does not read"),
    "dtype_not_a_string": (_header(lambda h: _first(h).update(dtype=["F32"])), "does not read"),
    "entry_not_an_object": (_header(lambda h: h.update({_tensors(h)[0]: "F32"})), _INVALID),
    # config.json: absurd dimensions refused from the config or at jax.eval_shape, wrong types as such.
    "hidden_size_1e9": (_config("text_config.hidden_size", 10**9), _MISMATCH),
    "num_hidden_layers_1e6": (_config("text_config.num_hidden_layers", 10**6), _MISMATCH),
    "vision_intermediate_size_1e9": (_config("vision_config.intermediate_size", 10**9), _MISMATCH),
    "vocab_size_1e12": (_config("text_config.vocab_size", 10**12), _RANGE),
    "intermediate_size_1e30": (_config("text_config.intermediate_size", 10**30), _RANGE),
    "max_position_embeddings_1e12": (_config("text_config.max_position_embeddings", 10**12), _RANGE),
    "num_hidden_layers_zero": (_config("text_config.num_hidden_layers", 0), _RANGE),
    "num_attention_heads_negative": (_config("vision_config.num_attention_heads", -2), _RANGE),
    "hidden_size_string": (_config("text_config.hidden_size", "64"), _RANGE),
    "hidden_size_float": (_config("text_config.hidden_size", 64.5), _RANGE),
    "num_hidden_layers_bool": (_config("text_config.num_hidden_layers", True), _RANGE),
    "hidden_size_list": (_config("vision_config.hidden_size", [32]), _RANGE),
    "layer_norm_eps_string": (_config("vision_config.layer_norm_eps", "tiny"), "finite number"),
    "rms_norm_eps_nan": (_config("text_config.rms_norm_eps", float("nan")), "finite number"),
    "rope_theta_string": (_config("text_config.rope_parameters.rope_theta", "ten thousand"), "finite number"),
    "rope_parameters_list": (_config("text_config.rope_parameters", [10000.0]), "not an object"),
    "text_config_list": (_config("text_config", [64, 128]), "not an object"),
    "image_token_index_1e12": (_config("image_token_index", 10**12), "image_token_id"),
    "vision_feature_layer_1e9": (_config("vision_feature_layer", 10**9), "vision_feature_layer"),
    "tie_word_embeddings_string": (_config("text_config.tie_word_embeddings", "no"), "bool"),
    "config_not_json": (_config_text("{\"model_type\": \"llava\", "), "not valid JSON"),
    "config_a_list": (_config_text("[\"llava\"]"), "not an object"),
    "config_over_16_mib": (_config_text("{\"model_type\": \"llava\"" + " " * (17 << 20) + "}"), "MiB"),
    # The shards an index names: inside the directory only; no pickle, ever.
    "index_parent_path": (_index(lambda d: "../outside.safetensors"), "refusing to read it"),
    "index_absolute_path": (_index(lambda d: str(d.parent / "elsewhere.safetensors")), "refusing to read it"),
    "index_not_json": (_index_text("{\"weight_map\": "), "not a safetensors index"),
    "index_weight_map_list": (_index_text("{\"weight_map\": [\"model-00001-of-00001.safetensors\"]}"),
                              "not a safetensors index"),
    "tensor_in_two_shards": (_two_shards, "twice"),
    "index_names_a_pickle": (_index_names_pickle, _INVALID),
    "pickle_only": (_pickle_only, "pickled"),
}

# Through the other entry points too, where a damage would otherwise surface later (training compiles
# for the config before it reads the weights; score places them on the devices).
ALSO = [("train", "hidden_size_1e9"), ("train", "offsets_overlap"), ("train", "index_parent_path"),
        ("score", "num_hidden_layers_1e6"), ("score", "shape_product_overflows_int64"), ("score", "pickle_only")]


# Every case runs through the real CLI (`cli.main`, as `python -m lcbm_jax.cli` would) in one child
# process under the address-space limit, each with its own stderr: one JAX start instead of one per case.
_BATCH = r"""
import contextlib, io, json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))
from lcbm_jax import cli
results = {{}}
for name, argv in json.load(open(sys.argv[1])).items():
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      rc = cli.main(argv)
    except SystemExit as e:
      rc = e.code
    except BaseException:
      traceback.print_exc()
      rc = "raised"
  results[name] = {{"rc": rc, "stderr": err.getvalue()}}
json.dump(results, open(sys.argv[2], "w"))
""".format(_AS_LIMIT)


class _Result:
  def __init__(self, rc, stderr):
    self.returncode, self.stderr, self.stdout = rc, stderr, ""


def _argv(command: str, d: pathlib.Path, tmp: pathlib.Path) -> list[str]:
  if command == "import-hf":
    return ["import-hf", "--hf-dir", str(d), "--out", str(tmp / "out")]
  if command == "score":
    return ["score", "--checkpoint", str(d), "--prompt", "hello", "--continuation", " world"]
  return ["train", "--config", str(ROOT / "experiments/configs/demo.py") + ":small", "--workdir", str(tmp / "w"),
          "--config.data.dir=" + str(tmp / "no_data"), f"--config.init.checkpoint={d}"]


def _run_batch(cases: dict[str, list[str]], tmp: pathlib.Path) -> dict[str, _Result]:
  (tmp / "cases.json").write_text(json.dumps(cases))
  proc = subprocess.run([sys.executable, "-c", _BATCH, str(tmp / "cases.json"), str(tmp / "results.json")],
                        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, cwd=ROOT,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {k: _Result(v["rc"], v["stderr"]) for k, v in json.loads((tmp / "results.json").read_text()).items()}


CASES = [("import-hf", k) for k in KINDS] + ALSO


@pytest.fixture(scope="module")
def results(hf_dir, tmp_path_factory):
  """(command, kind) -> (the result, the damaged directory, its scratch directory), all in one child."""
  cases, dirs = {}, {}
  for command, kind in CASES:
    tmp = tmp_path_factory.mktemp(f"{command}-{kind}")
    d = tmp / "model"
    shutil.copytree(hf_dir, d)
    KINDS[kind][0](d)
    cases[f"{command}/{kind}"], dirs[(command, kind)] = _argv(command, d, tmp), (d, tmp)
  got = _run_batch(cases, tmp_path_factory.mktemp("batch"))
  return {key: (got[f"{key[0]}/{key[1]}"], *dirs[key]) for key in dirs}


@pytest.mark.parametrize("command,kind", CASES)
def test_hostile_artifact_is_one_line_error(results, command, kind):
  result, d, tmp = results[(command, kind)]
  line = _error_line(result)
  assert KINDS[kind][1] in line, line
  assert not _marker(d).exists(), "a pickle was loaded"
  assert not (tmp / "out").exists() or not any((tmp / "out").iterdir())


def test_the_undamaged_copy_imports(hf_dir, tmp_path):
  """The damage is what fails above: the same copy, undamaged, imports under the same limits."""
  d = tmp_path / "model"
  shutil.copytree(hf_dir, d)
  proc = _lcbm("import-hf", "--hf-dir", d, "--out", tmp_path / "out")
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def imported(hf_dir, tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("imported") / "ckpt"
  proc = _lcbm("import-hf", "--hf-dir", hf_dir, "--out", out)
  assert proc.returncode == 0, proc.stderr
  return out


_STORED = [("hidden_size_1e9", 10**9, "the model expects"), ("vocab_size_1e12", 10**12, _RANGE),
           ("not_json", None, "cannot read the model config")]


@pytest.fixture(scope="module")
def stored_results(imported, tmp_path_factory):
  """Our own checkpoint's model config is a file too: a re-hashed manifest proves bytes, not sanity."""
  from lcbm_jax import checkpoint
  cases = {}
  for kind, value, _ in _STORED:
    out = tmp_path_factory.mktemp(kind) / "imported"
    shutil.copytree(imported, out)
    meta = out / "model" / "metadata"
    if value is None:
      meta.write_text("{\"text\": ")
    else:
      cfg = json.loads(meta.read_text())
      cfg["text"]["hidden_size" if kind.startswith("hidden") else "vocab_size"] = value
      meta.write_text(json.dumps(cfg))
    checkpoint.write_manifest(out)   # the attacker re-hashes: verification passes, the config must not
    cases[kind] = _argv("score", out, out.parent)
  return _run_batch(cases, tmp_path_factory.mktemp("stored-batch"))


@pytest.mark.parametrize("kind,value,phrase", _STORED)
def test_hostile_stored_model_config_is_one_line_error(stored_results, kind, value, phrase):
  line = _error_line(stored_results[kind])
  assert phrase in line, line
