"""The pure train step: loss against torch, non-finite steps, gradient accumulation, freeze rules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets
from lcbm_jax.training import optim, step as step_lib, train
from lcbm_jax.training.state import TrainState
from train_helpers import synthetic_batch, tiny_config


def _setup(config):
  cfg = presets.get(config.model.preset)
  model = lcbm.LCBM(cfg)
  params = lcbm.init_params(cfg, jax.random.key(0))
  tx = optim.make_optimizer(config.optim, params, config.num_steps)
  trainable = optim.trainable_mask(params, tuple(config.optim.freeze))

  def apply_fn(p, b, rng):
    return model.apply({"params": p}, b["input_ids"], b["images"], b["segment_ids"], b["positions"],
                       image_index=b["image_index"])

  step = jax.jit(step_lib.make_train_step(apply_fn, tx, trainable, optim.make_schedule(config.optim, config.num_steps),
                                          len(config.data.tasks), config.optim.grad_accum))
  return TrainState.create(params, tx.init(params)), step, apply_fn


@pytest.fixture(scope="module")
def tiny():
  """One compiled step shared by the tests that use the default optimizer (compiles are the cost)."""
  config = tiny_config()
  return (config, *_setup(config))


def _same(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_loss_matches_torch_cross_entropy_overall_and_per_task(tiny):
  config, state, _, apply_fn = tiny
  batch = synthetic_batch(config, seed=1)
  logits = jax.jit(apply_fn)(state.params, batch, None)
  sums = step_lib.loss_sums(logits, batch, num_tasks=2)
  lt = torch.tensor(np.asarray(logits)).reshape(-1, logits.shape[-1])
  tt = torch.tensor(batch["targets"]).reshape(-1).long()
  mask = batch["loss_mask"].reshape(-1) > 0
  task = batch["task_ids"].reshape(-1)
  ref = torch.nn.functional.cross_entropy(lt[mask], tt[mask], reduction="mean").item()
  np.testing.assert_allclose(float(sums["nll"] / sums["tokens"]), ref, rtol=1e-5)
  for t in range(2):
    sel = mask & (task == t)
    ref_t = torch.nn.functional.cross_entropy(lt[sel], tt[sel], reduction="mean").item()
    np.testing.assert_allclose(float(sums["task_nll"][t] / sums["task_tokens"][t]), ref_t, rtol=1e-5)


def test_nonfinite_step_leaves_state_bit_identical_and_counts(tiny):
  config, state, step, _ = tiny
  rng = jax.random.key(0)
  state, m = step(state, synthetic_batch(config, 0), rng)
  state, m = step(state, synthetic_batch(config, 1), rng)
  assert bool(m["finite"])
  before = jax.device_get(state)
  # A NaN in the loss mask poisons the loss; a NaN pixel poisons the gradient through the vision tower.
  for i, poison in enumerate(("loss_mask", "images", "images")):
    bad = synthetic_batch(config, 2 + i)
    bad[poison].reshape(-1)[bad["loss_mask"].reshape(-1).argmax()] = np.nan
    state, m = step(state, bad, rng)
    assert not bool(m["finite"])
    assert int(m["nonfinite_in_row"]) == i + 1 and int(m["nonfinite_total"]) == i + 1
    assert _same(state.params, before.params) and _same(state.opt_state, before.opt_state)
  assert int(state.step) == 5   # skipped steps still advance the step (data and keys move on)
  state, m = step(state, synthetic_batch(config, 9), rng)
  assert bool(m["finite"]) and int(m["nonfinite_in_row"]) == 0 and int(m["nonfinite_total"]) == 3
  assert not _same(state.params, before.params)


def test_consecutive_nonfinite_steps_stop_with_a_clear_message():
  train.check_finite({"nonfinite_in_row": 2, "nonfinite_total": 7}, limit=3, step=10)
  with pytest.raises(UserError, match=r"3 non-finite steps in a row .*step 11.*optim.lr"):
    train.check_finite({"nonfinite_in_row": 3, "nonfinite_total": 8}, limit=3, step=11)


def test_gradient_accumulation_matches_one_big_batch(tiny):
  results = []
  for accum in (1, 4):
    if accum == 1:
      config, state, step, _ = tiny
    else:
      config = tiny_config(grad_accum=accum)
      state, step, _ = _setup(config)
    losses = []
    for i in range(2):
      state, m = step(state, synthetic_batch(config, i, groups=accum), jax.random.key(0))   # a group per micro-batch
      losses.append(float(m["loss"]))
    results.append((losses, state.params))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_freeze_rules_stage1_moves_only_the_projector():
  config = tiny_config(freeze=("^vision/", "^llm/"))
  state, step, _ = _setup(config)
  before = jax.device_get(state.params)
  for i in range(2):
    state, m = step(state, synthetic_batch(config, i), jax.random.key(0))
  assert _same(state.params["vision"], before["vision"]) and _same(state.params["llm"], before["llm"])
  assert not _same(state.params["projector"], before["projector"])
  # Frozen parameters carry no Adam moments.
  n_moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
  assert n_moments == 2 * sum(x.size for x in jax.tree.leaves(before["projector"]))


def test_weight_decay_mask_and_pattern_errors():
  params = lcbm.abstract_params(presets.get("tiny"))
  mask = {optim.path_str(p): v for p, v in
          jax.tree_util.tree_flatten_with_path(optim.decay_mask(params, ("norm", "bias", "embed")))[0]}
  assert mask["llm/layers/attn/q/kernel"] and mask["projector/linear_1/kernel"]
  assert not mask["llm/embed_tokens/embedding"] and not mask["llm/norm/scale"]
  assert not mask["projector/linear_1/bias"] and not mask["vision/layers/layer_norm1/scale"]
  with pytest.raises(UserError, match="matches no parameter"):
    optim.trainable_mask(params, ("^visoin/",))
  with pytest.raises(UserError, match="freezes every parameter"):
    optim.make_optimizer(tiny_config(freeze=(".",)).optim, params, 10)


def test_schedule_warms_up_then_decays_to_end_ratio():
  config = tiny_config()
  s = optim.make_schedule(config.optim, 20)
  assert float(s(0)) == 0.0 and np.isclose(float(s(2)), 3e-3)
  assert np.isclose(float(s(20)), 3e-3 * config.optim.end_lr_ratio)
  assert float(s(10)) < float(s(5)) < float(s(2))


def test_bfloat16_state_keeps_its_dtypes_across_steps():
  # The compiled step refuses inputs whose dtypes differ from its own outputs, so a bf16 run must
  # get back exactly the dtypes it started with (Adam moments included).
  import dataclasses
  from lcbm_jax import sharding
  from lcbm_jax.model import presets
  from lcbm_jax.training import bench, config as config_lib, train
  config = config_lib.base_config()
  config.data.batch_size, config.data.seq_len, config.num_steps, config.optim.warmup_steps = 2, 64, 10, 1
  model_cfg = dataclasses.replace(presets.get("tiny"), param_dtype="bfloat16", compute_dtype="bfloat16")
  compiled = train.compile_steps(config, model_cfg, sharding.make_mesh(data=1, devices=jax.devices()[:1]))
  state = compiled.init(jax.random.key(0))
  batch = {k: jax.device_put(x, compiled.batch_sharding)
           for k, x in bench.synthetic_batch(model_cfg, 2, 64, 0).items()}
  for _ in range(2):
    state, metrics = compiled.train_step(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"]))
  want = jax.tree.map(lambda a: a.dtype, compiled.abstract_state)
  assert jax.tree.map(lambda a: a.dtype, state) == want
  assert state.params["llm"]["norm"]["scale"].dtype == jnp.bfloat16
