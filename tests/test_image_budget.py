"""Image budgets: the vision tower's cost follows `data.images_per_batch`, not rows x image slots, and
each data shard splices the features it encoded itself (no all-gather of vision features)."""
import dataclasses
import functools
import re

import jax
import numpy as np
import pytest

from lcbm_jax import sharding
from lcbm_jax.model import lcbm, presets
from lcbm_jax.training import train
from train_helpers import tiny_config


@functools.lru_cache(maxsize=None)
def _step_flops(rows: int, max_images: int, budget: int, compiled: bool = False) -> float:
  """FLOPs of the train step (`cost_analysis`); lowered (before XLA's passes, no compile: a second)
  unless `compiled`."""
  config = tiny_config()
  config.data.batch_size, config.data.images_per_batch = rows, budget
  cfg = dataclasses.replace(presets.get("tiny"), max_images=max_images)
  mesh = sharding.make_mesh(data=1, devices=jax.devices()[:1])
  return train.compile_steps(config, cfg, mesh, compile=compiled).train_step.cost_analysis()["flops"]


def _one_image_flops() -> float:
  """Forward + backward of the vision tower and projector on one image, compiled on its own."""
  cfg = presets.get("tiny")
  params = lcbm.init_params(cfg, jax.random.key(0))
  model = lcbm.LCBM(cfg)
  s = cfg.vision.image_size
  images = np.zeros((1, 1, s, s, 3), np.float32)

  def loss(p):
    return model.apply({"params": p}, images, method=lcbm.LCBM.image_features).sum()
  return jax.jit(jax.grad(loss)).lower(params).compile().cost_analysis()["flops"]


def test_vision_flops_follow_the_budget_not_rows_or_slots():
  # The compiled step: 8 more images in the budget cost 8 x one image's forward + backward.
  added = _step_flops(4, 1, 12, compiled=True) - _step_flops(4, 4, 4, compiled=True)
  np.testing.assert_allclose(added, 8 * _one_image_flops(), rtol=0.02)
  # And that cost does not depend on the rows or on max_images (the image slots of the old layout).
  added = {rows: _step_flops(rows, m, 12) - _step_flops(rows, 4, 4) for rows, m in ((4, 1), (8, 4), (16, 2))}
  assert added[4] > 0
  np.testing.assert_allclose([added[8], added[16]], added[4], rtol=1e-5, err_msg=str(added))
  assert _step_flops(8, 1, 12) == _step_flops(8, 4, 12)


@pytest.mark.parametrize("data,fsdp", [(8, 1), (2, 4)])
def test_no_all_gather_of_vision_features_across_the_data_axis(data, fsdp):
  config = tiny_config()
  cfg = presets.get("tiny")
  mesh = sharding.make_mesh(data=data, fsdp=fsdp)
  hlo = train.compile_steps(config, cfg, mesh).train_step.as_text()
  groups = train.image_groups(config, mesh)
  per_group = config.data.images_per_batch // groups
  p, dv, d = cfg.num_image_tokens, cfg.vision.hidden_size, cfg.text.hidden_size
  feature_shapes = {(per_group * p, d), (per_group, p, dv), (per_group * p, dv), (per_group, p, d),
                    (groups * per_group * p, d), (groups * per_group, p, dv)}
  gathered = [tuple(int(x) for x in m.group(1).split(",")) for m in
              re.finditer(r"= f32\[([\d,]+)\][^\n]*? all-gather\(", hlo)]
  bad = [s for s in gathered if tuple(s[-2:]) in feature_shapes or tuple(s[-3:]) in feature_shapes]
  assert not bad, f"all-gathers of vision features: {bad}"
  if fsdp == 1:
    assert not gathered   # pure data parallelism replicates the weights: nothing is gathered at all
