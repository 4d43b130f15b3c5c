"""The forward pass on 8 simulated devices equals the single-device forward for every mesh layout."""
import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from lcbm_jax import axes, sharding
from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets

CFG = presets.get("tiny")


def _forward(params, ids, images, seg, pos):
  return lcbm.LCBM(CFG).apply({"params": params}, ids, images, seg, pos)


@pytest.fixture(scope="module")
def setup():
  params = lcbm.init_params(CFG, jax.random.key(0))
  rng = np.random.default_rng(0)
  b, length, p = 8, 48, CFG.num_image_tokens
  ids = rng.integers(5, CFG.text.vocab_size, (b, length)).astype(np.int32)
  ids[:, 1:1 + p] = CFG.image_token_id
  ids[::2, 20:20 + p] = CFG.image_token_id      # even rows hold two images
  seg = np.ones((b, length), np.int32)
  seg[:, 40:] = 2                                # a second packed sample
  seg[1, 44:] = 0                                # and padding
  pos = np.where(seg == 2, np.arange(length) - 40, np.arange(length)).astype(np.int32)
  images = rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32)
  batch = (ids, images, seg, pos)
  ref = np.asarray(jax.jit(_forward)(params, *batch))
  return params, batch, ref


@pytest.mark.parametrize("data,fsdp,tensor", [(1, 8, 1), (2, 1, 4), (2, 2, 2)])
def test_sharded_forward_equals_single_device(setup, data, fsdp, tensor):
  params, batch, ref = setup
  mesh = sharding.make_mesh(data=data, fsdp=fsdp, tensor=tensor)
  p_sh = sharding.param_shardings(CFG, mesh)
  sharded = jax.device_put(params, p_sh)
  # The layout really splits weights over the mesh axes that divide them.
  q_spec = sharded["llm"]["layers"]["attn"]["q"]["kernel"].sharding.spec
  assert q_spec == PartitionSpec(None, "fsdp" if fsdp > 1 else None, "tensor" if tensor > 1 else None, None)
  b_sh = sharding.batch_sharding(mesh)
  args = [jax.device_put(x, b_sh) for x in batch]
  with jax.set_mesh(mesh):   # the model then pins activations to batch sharding (attention.constrain)
    out = jax.jit(_forward, in_shardings=(p_sh, b_sh, b_sh, b_sh, b_sh))(sharded, *args)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_indivisible_dims_fall_back_to_replication():
  mesh = sharding.make_mesh(data=2, tensor=4)
  p_sh = sharding.param_shardings(CFG, mesh)
  # tiny's vision tower has 2 heads and the text model 2 kv heads: 4-way tensor cannot split them.
  assert p_sh["vision"]["layers"]["attn"]["q"]["kernel"].spec == PartitionSpec(None, None, None, None)
  assert p_sh["llm"]["layers"]["attn"]["k"]["kernel"].spec == PartitionSpec(None, None, None, None)
  assert p_sh["llm"]["layers"]["attn"]["q"]["kernel"].spec == PartitionSpec(None, None, "tensor", None)
  assert axes.logical_to_spec(("embed", "embed"), (64, 64), sharding.make_mesh(data=1, fsdp=8)) == \
      PartitionSpec("fsdp", None)   # one mesh axis never shards two dims


def test_optimizer_state_sharded_like_params():
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  tx = optax.adamw(1e-3)
  abstract = jax.eval_shape(tx.init, lcbm.abstract_params(CFG))
  shardings = sharding.tree_shardings(abstract, CFG, mesh)
  p_sh = sharding.param_shardings(CFG, mesh)
  adam = shardings[0]
  assert adam.count.spec == PartitionSpec()
  for moment in (adam.mu, adam.nu):
    jax.tree.map(lambda a, b: None if a.spec == b.spec else pytest.fail(f"{a.spec} != {b.spec}"), moment, p_sh)


def test_make_mesh_errors_and_fill():
  assert sharding.make_mesh(fsdp=2, tensor=2).shape == {"data": 2, "fsdp": 2, "tensor": 2}
  assert sharding.make_mesh(data=1, fsdp=-1).shape["fsdp"] == 8
  with pytest.raises(UserError, match="divide"):
    sharding.make_mesh(data=-1, tensor=3)
  with pytest.raises(UserError, match="device count"):
    sharding.make_mesh(data=2, fsdp=2, tensor=1)
  with pytest.raises(UserError, match="at most one -1"):
    sharding.make_mesh(data=-1, fsdp=-1)
  assert sharding.batch_sharding(sharding.make_mesh()).spec == PartitionSpec(("data", "fsdp"))
