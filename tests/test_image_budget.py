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
def _step_flops(rows: int, max_images: int, budget: int, mesh=None) -> float:
  config = tiny_config()
  config.data.batch_size, config.data.images_per_batch = rows, budget
  cfg = dataclasses.replace(presets.get("tiny"), max_images=max_images)
  mesh = mesh or sharding.make_mesh(data=1, devices=jax.devices()[:1])
  return train.compile_steps(config, cfg, mesh).train_step.cost_analysis()["flops"]


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
  per_image = _one_image_flops()
  base = {rows: _step_flops(rows, 4, 4) for rows in (4, 8)}
  for rows, max_images in ((4, 1), (8, 4)):
    added = _step_flops(rows, max_images, 12) - base[rows]   # 8 more images in the budget
    np.testing.assert_allclose(added, 8 * per_image, rtol=0.02, err_msg=f"rows {rows} max_images {max_images}")
  # Image slots per row no longer exist: the same budget costs the same whatever max_images is.
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
