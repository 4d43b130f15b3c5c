"""Every mesh layout trains like one device: same loss for 10 steps (data, fsdp, tensor, mixed)."""
import jax
import numpy as np
import pytest

from lcbm_jax import sharding
from lcbm_jax.model import presets
from lcbm_jax.training import train
from train_helpers import synthetic_batch, tiny_config

STEPS = 10


def _losses(mesh, config) -> tuple[list[float], dict]:
  steps = train.compile_steps(config, presets.get(config.model.preset), mesh)
  rng = jax.random.key(config.seed)
  state = steps.init(rng)
  losses = []
  for i in range(STEPS):
    batch = {k: jax.device_put(v, steps.batch_sharding) for k, v in synthetic_batch(config, i, train.image_groups(config, mesh)).items()}
    state, m = steps.train_step(state, batch, rng)
    losses.append(float(m["loss"]))
  return losses, steps.state_shardings


@pytest.fixture(scope="module")
def single_device():
  config = tiny_config()
  return _losses(sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1]), config)[0]


@pytest.mark.parametrize("data,fsdp,tensor", [(8, 1, 1), (1, 8, 1), (2, 1, 4), (2, 2, 2)])
def test_mesh_layout_matches_single_device(single_device, data, fsdp, tensor):
  losses, shardings = _losses(sharding.make_mesh(data, fsdp, tensor), tiny_config())
  assert losses[-1] < losses[0] - 0.05   # it trains
  np.testing.assert_allclose(losses, single_device, atol=1e-5, rtol=0)
  # The layout is real: with fsdp or tensor > 1 some weights and their Adam moments are split.
  specs = [s.spec for s in jax.tree.leaves(shardings)]
  if fsdp > 1 or tensor > 1:
    assert any(any(a is not None for a in spec) for spec in specs)
  mu = shardings.opt_state.inner_states["train"].inner_state[1][0].mu
  assert jax.tree.leaves(mu)[0].spec is not None
  assert mu["llm"]["layers"]["mlp"]["up"]["kernel"] == shardings.params["llm"]["layers"]["mlp"]["up"]["kernel"]
