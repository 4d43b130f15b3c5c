"""Checkpoint manager: mesh-portable restore, integrity fallback, retention, params-only round trip.

Everything runs on the 8 simulated CPU devices of conftest with the `tiny` model preset.
"""
import json
import logging
import os
import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from data_pipeline.tokenizer import Tokenizer
from lcbm_jax import artifacts
from lcbm_jax import checkpoint as ck
from lcbm_jax import cli
from lcbm_jax import sharding
from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets
from lcbm_jax.training import preemption
from lcbm_jax.training.state import TrainState

CFG = presets.get("tiny")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("tok")
  texts = [f"the video got {i} likes and {i * 7} views; viewers replayed scene {i % 5}" for i in range(200)]
  Tokenizer.train(texts, 300, out)
  return out


@pytest.fixture(scope="module")
def train_state():
  """A real TrainState of the tiny model after two Adam updates (non-trivial moments)."""
  params = lcbm.init_params(CFG, jax.random.key(0))
  tx = optax.adam(1e-2)

  @jax.jit
  def update(state):
    grads = jax.tree.map(lambda p: jnp.sin(p) + 0.1, state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state)

  return update(update(TrainState.create(params, tx.init(params))))


def test_restore_on_other_meshes_is_bit_identical(tmp_path, train_state, tokenizer_dir):
  fsdp8 = sharding.make_mesh(data=1, fsdp=8, tensor=1)
  sharded = jax.device_put(train_state, sharding.tree_shardings(train_state, CFG, fsdp8))
  embed = sharded.params["llm"]["embed_tokens"]["embedding"]
  assert embed.sharding.spec == P(None, "fsdp") and len(embed.sharding.device_set) == 8
  _save_steps(tmp_path, sharded, [2], tokenizer_dir)

  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  targets = {"data=2,tensor=4": sharding.tree_shardings(train_state, CFG, sharding.make_mesh(data=2, tensor=4)),
             "1 device": jax.tree.map(lambda _: one, train_state)}
  for name, shardings in targets.items():
    mngr = ck.CheckpointManager(tmp_path)
    step = mngr.latest_good_step()
    assert step == 2
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), train_state, shardings)
    restored, data_state = mngr.restore(step, target)
    mngr.close()
    assert data_state == {"epoch": 0, "position": 2}
    assert isinstance(restored, TrainState)
    assert _bitwise_equal(restored, train_state), name
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings)):
      assert got.sharding == want, name
  mlp_up = targets["data=2,tensor=4"].params["llm"]["layers"]["mlp"]["up"]["kernel"]
  assert "tensor" in mlp_up.spec   # the second layout really differs from the first


def _abstract(state, shard_fn):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shard_fn(x)), state)


def _bitwise_equal(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y)) and np.asarray(x).dtype == np.asarray(y).dtype
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _save_steps(workdir, state, steps, tokenizer_dir, **kw):
  mngr = ck.CheckpointManager(workdir, **kw)
  for s in steps:
    mngr.save(s, state, {"epoch": 0, "position": s}, {"num_steps": 100, "tasks": ("kbft",)}, tokenizer_dir,
              model_cfg=CFG)
  mngr.close()
  return mngr


def _flip_byte(path: pathlib.Path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x40
  path.write_bytes(bytes(data))


def _largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
  return max(files, key=lambda p: p.stat().st_size)


DAMAGE = {
    "flipped_byte": (lambda d: _flip_byte(_largest_array_file(d)), "corrupted"),
    "truncated_file": (lambda d: os.truncate(_largest_array_file(d), 10), "truncated"),
    "deleted_file": (lambda d: _largest_array_file(d).unlink(), "is missing"),
    "missing_commit_marker": (lambda d: (d / ck.COMMIT_MARKER).unlink(), ck.COMMIT_MARKER),
    "missing_manifest": (lambda d: (d / ck.MANIFEST).unlink(), ck.MANIFEST),
    "flipped_data_state": (lambda d: _flip_byte(d / "data" / "process_0.json"), "process_0.json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_step_falls_back_to_previous(tmp_path, train_state, tokenizer_dir, caplog, damage):
  _save_steps(tmp_path, train_state, [1, 2], tokenizer_dir)
  newest = tmp_path / ck.CHECKPOINTS / "2"
  damage_fn, expected_words = DAMAGE[damage]
  damage_fn(newest)

  mngr = ck.CheckpointManager(tmp_path)
  with caplog.at_level(logging.WARNING, logger="lcbm_jax.checkpoint"):
    step = mngr.latest_good_step()
  assert step == 1
  warning = " ".join(r.getMessage() for r in caplog.records if "skipping step 2" in r.getMessage())
  assert expected_words in warning, caplog.text
  assert str(newest) in warning   # names the file (or the step directory the file is in)
  quarantined = list((tmp_path / ck.QUARANTINE).glob("2.*.reason.txt"))
  assert len(quarantined) == 1 and expected_words in quarantined[0].read_text()
  # The run continues: step 2 can be written again and then verifies.
  restored, data_state = mngr.restore(step, _abstract(train_state, lambda x: x.sharding))
  assert data_state["position"] == 1 and _bitwise_equal(restored, train_state)
  mngr.save(2, restored, data_state, {}, tokenizer_dir, model_cfg=CFG)
  mngr.close()
  assert ck.check_step(newest) is None


def test_partial_save_is_ignored(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path, train_state, [1], tokenizer_dir)
  # What a kill -9 during an Orbax write leaves: a temporary directory, never renamed.
  partial = tmp_path / ck.CHECKPOINTS / "2.orbax-checkpoint-tmp-1234"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "_METADATA").write_text("{")
  assert ck.list_steps(tmp_path / ck.CHECKPOINTS) == [1]
  mngr = ck.CheckpointManager(tmp_path)
  assert mngr.latest_good_step() == 1
  mngr.save(2, train_state, {}, {}, tokenizer_dir, model_cfg=CFG)
  mngr.close()
  assert ck.find_latest_good_step(tmp_path / ck.CHECKPOINTS) == (2, {})


def test_retention_keeps_last_n_and_every_k(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path, train_state, range(1, 12), tokenizer_dir, keep_last=2, keep_every=4)
  assert ck.list_steps(tmp_path / ck.CHECKPOINTS) == [4, 8, 10, 11]
  for s in (4, 8, 10, 11):
    assert ck.check_step(tmp_path / ck.CHECKPOINTS / str(s)) is None
  _save_steps(tmp_path / "b", train_state, [1, 2, 3], tokenizer_dir, keep_last=1)
  assert ck.list_steps(tmp_path / "b" / ck.CHECKPOINTS) == [3]


def test_retention_never_counts_unverified_steps(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path, train_state, [1, 2], tokenizer_dir, keep_last=1)
  assert ck.list_steps(tmp_path / ck.CHECKPOINTS) == [2]
  (tmp_path / ck.CHECKPOINTS / "2" / ck.MANIFEST).unlink()   # as if killed before the manifest
  mngr = ck.CheckpointManager(tmp_path, keep_last=1)
  assert mngr.latest_good_step() is None          # nothing verifies: start fresh, step 2 quarantined
  mngr.save(1, train_state, {}, {}, tokenizer_dir, model_cfg=CFG)
  mngr.close()
  assert ck.list_steps(tmp_path / ck.CHECKPOINTS) == [1]


def test_saving_the_same_step_twice_is_a_no_op(tmp_path, train_state, tokenizer_dir):
  mngr = ck.CheckpointManager(tmp_path)
  mngr.save(3, train_state, {"a": 1}, {}, tokenizer_dir, model_cfg=CFG)
  mngr.save(3, train_state, {"a": 1}, {}, tokenizer_dir, model_cfg=CFG)   # checkpoint step + preemption
  mngr.close()
  assert ck.find_latest_good_step(tmp_path / ck.CHECKPOINTS) == (3, {})


def test_data_state_bytes_round_trip(tmp_path, train_state, tokenizer_dir):
  blob = json.dumps({"next_index": 17, "worker": [1, 2]}).encode()
  mngr = ck.CheckpointManager(tmp_path)
  mngr.save(1, train_state, blob, {}, tokenizer_dir, model_cfg=CFG)
  step = mngr.latest_good_step()
  _, data_state = mngr.restore(step, _abstract(train_state, lambda x: x.sharding))
  mngr.close()
  assert data_state == blob


def test_restore_with_wrong_model_names_the_leaf(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path, train_state, [1], tokenizer_dir)
  bigger = jax.tree_util.tree_map_with_path(
      lambda path, x: jax.ShapeDtypeStruct(x.shape[:-1] + (x.shape[-1] * 2,) if "embedding" in
                                           jax.tree_util.keystr(path) else x.shape, x.dtype), train_state)
  mngr = ck.CheckpointManager(tmp_path)
  with pytest.raises(UserError, match=r"embed_tokens/embedding is float32\[512, 64\] in the checkpoint"):
    mngr.restore(1, bigger)
  mngr.close()


def test_checkpoint_holds_config_model_and_tokenizer(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path, train_state, [5], tokenizer_dir)
  step_dir = tmp_path / ck.CHECKPOINTS / "5"
  assert (step_dir / "tokenizer" / "tokenizer.model").read_bytes() == (tokenizer_dir / "tokenizer.model").read_bytes()
  assert json.loads((step_dir / "config" / "metadata").read_text()) == {"num_steps": 100, "tasks": ["kbft"]}
  assert presets.LCBMConfig.from_dict(json.loads((step_dir / "model" / "metadata").read_text())) == CFG
  manifest = json.loads((step_dir / ck.MANIFEST).read_text())["files"]
  on_disk = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file()} - {ck.MANIFEST}
  assert set(manifest) == on_disk


def test_load_for_inference_from_workdir_step_and_params_only(tmp_path, train_state, tokenizer_dir):
  _save_steps(tmp_path / "run", train_state, [1, 2], tokenizer_dir)
  want_tok = Tokenizer.load(tokenizer_dir)
  for path in (tmp_path / "run", tmp_path / "run" / ck.CHECKPOINTS / "1"):
    cfg, params, tok = artifacts.load_for_inference(path)
    assert cfg == CFG and _bitwise_equal(params, train_state.params)
    assert tok.encode("views and likes") == want_tok.encode("views and likes")

  out = ck.save_params(tmp_path / "imported", CFG, train_state.params, tokenizer_dir)
  assert ck.check_step(out) is None
  cfg, params, tok = artifacts.load_for_inference(out, mesh=sharding.make_mesh(data=2, tensor=4))
  assert cfg == CFG and _bitwise_equal(params, train_state.params)
  assert any(len(x.sharding.device_set) > 1 for x in jax.tree.leaves(params))
  with pytest.raises(UserError, match="not empty"):
    ck.save_params(out, CFG, train_state.params, tokenizer_dir)


def test_load_for_inference_names_the_broken_file(tmp_path, train_state, tokenizer_dir, capsys):
  out = ck.save_params(tmp_path / "p", CFG, train_state.params, tokenizer_dir)
  target = max((p for p in (out / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  _flip_byte(target)
  with pytest.raises(UserError, match=f"damaged: {target} has SHA-256 .* manifest says"):
    artifacts.load_for_inference(out)
  # Through the command line: one line naming the file, exit code 2, no traceback.
  assert cli.main(["export-hf", "--checkpoint", str(out), "--out", str(tmp_path / "hf")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("lcbm: error: checkpoint") and str(target) in err and "Traceback" not in err
  with pytest.raises(UserError, match="no checkpoint found"):
    artifacts.load_for_inference(tmp_path)
  with pytest.raises(UserError, match="does not exist"):
    artifacts.load_for_inference(tmp_path / "nope")


def test_manifest_write_is_atomic(tmp_path, train_state, tokenizer_dir, monkeypatch):
  """A crash while the manifest is being written leaves the old state: no manifest, step unverified."""
  out = ck.save_params(tmp_path / "p", CFG, train_state.params, tokenizer_dir)
  (out / ck.MANIFEST).unlink()

  def crash(*_):
    raise KeyboardInterrupt("killed mid-write")

  monkeypatch.setattr(ck.os, "replace", crash)
  with pytest.raises(KeyboardInterrupt):
    ck.write_manifest(out)
  assert not (out / ck.MANIFEST).exists()
  assert "not verified" in ck.check_step(out)


def test_preemption_watcher_turns_sigterm_into_a_flag():
  watcher = preemption.PreemptionWatcher()
  try:
    assert not watcher.requested(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.requested(2)
  finally:
    watcher.close()
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_save_params_numpy_relative_paths(tmp_path, train_state, monkeypatch):
  """How `lcbm import-hf` calls it: host numpy params, a relative --out, a tokenizer file path."""
  monkeypatch.chdir(tmp_path)
  np_params = jax.device_get(train_state.params)
  ck.save_params("imported", CFG, np_params, None)
  cfg, params, tok = artifacts.load_for_inference("imported")
  assert cfg == CFG and tok is None and _bitwise_equal(params, np_params)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(params))


def test_typed_prng_key_round_trip(tmp_path, tokenizer_dir):
  """States may carry typed keys (Orbax stores their raw data); the shape check must accept them."""
  state = {"key": jax.random.key(7), "w": jnp.arange(8.0)}
  mngr = ck.CheckpointManager(tmp_path)
  mngr.save(1, state, None, {}, tokenizer_dir, model_cfg=CFG)
  restored, data_state = mngr.restore(mngr.latest_good_step(), _abstract(state, lambda x: x.sharding))
  mngr.close()
  assert data_state is None
  assert jax.random.key_data(restored["key"]).tolist() == jax.random.key_data(state["key"]).tolist()


def test_verification_shared_by_processes_hashes_each_file_once(tmp_path, train_state, tokenizer_dir):
  """check_step(part=(i, n)): sizes everywhere, hashes split; a flipped byte is found by exactly one
  of n parts, a truncation by all of them."""
  mngr = ck.CheckpointManager(tmp_path, keep_last=2)
  mngr.save(1, train_state, {"i": 1}, {"lr": 0.1}, tokenizer_dir, model_cfg=CFG)
  mngr.close()
  step_dir = tmp_path / "checkpoints" / "1"
  assert all(ck.check_step(step_dir, part=(i, 3)) is None for i in range(3))
  files = sorted(json.loads((step_dir / ck.MANIFEST).read_text())["files"])
  victim = step_dir / files[4]
  data = bytearray(victim.read_bytes())
  data[0] ^= 0xFF
  victim.write_bytes(bytes(data))
  found = [ck.check_step(step_dir, part=(i, 3)) for i in range(3)]
  assert sum(f is not None for f in found) == 1 and "SHA-256" in found[4 % 3]
  victim.write_bytes(bytes(data[:-1]))
  assert all("bytes, manifest says" in (ck.check_step(step_dir, part=(i, 3)) or "") for i in range(3))
