"""The device mesh, and shardings for params, state and batches (and batches made global).

The model names every weight dimension with a logical axis (`embed`, `mlp`, `heads`, `kv_heads`,
`head_dim`, `vocab`, `layers`); `axes.LOGICAL_AXIS_RULES` maps those names onto the mesh axes
`("data", "fsdp", "tensor")`. A dimension whose size does not divide by its mesh axes is replicated
instead (tiny shapes on 8 devices meet this), so every preset runs on every mesh.

  mesh = make_mesh(data=2, fsdp=2, tensor=2)
  p_shardings = param_shardings(cfg, mesh)                 # same tree as lcbm.init_params(cfg, rng)
  params = jax.device_put(params, p_shardings)
  opt_shardings = tree_shardings(jax.eval_shape(tx.init, params), cfg, mesh)   # mu/nu like params
  batch = jax.device_put(batch, batch_sharding(mesh))      # leading axis over ("data", "fsdp")
  gbatch = make_global(local_batch, mesh)                  # per-process pipeline batch -> global jax.Arrays
  with jax.set_mesh(mesh):                                 # trace/lower the model inside this
    step = jax.jit(train_step, in_shardings=..., out_shardings=...).lower(...).compile()

Under `jax.set_mesh` the model pins its activations to batch sharding (`attention.constrain`); without
a mesh set it still runs, but XLA may gather activations across the batch (on the demo preset with
fsdp=8 that took 3x the temporary memory: 33.6 MB vs 10.1 MB per device).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from data_pipeline.batch import HOST_KEYS
from lcbm_jax import axes
from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm
from lcbm_jax.model.presets import LCBMConfig


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over `devices` (default: all); one size may be -1 = fill."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, tensor]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise UserError(f"mesh sizes data={data} fsdp={fsdp} tensor={tensor}: use positive sizes and at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise UserError(f"mesh: {len(devices)} devices do not divide into fsdp*tensor*... = {known}; "
                      "choose sizes whose product divides the device count")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise UserError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} devices, "
                    f"but {len(devices)} are available; make the product equal the device count (or use -1)")
  try:
    grid = mesh_utils.create_device_mesh(sizes, devices)
  except (ValueError, AssertionError, NotImplementedError):
    grid = np.asarray(devices).reshape(sizes)   # topology-unaware fallback (e.g. CPU, odd slices)
  return Mesh(grid, axes.MESH_AXES)


def logical_sharding(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, axes.logical_to_spec(names, shape, mesh))


def logical_axes(cfg: LCBMConfig) -> dict:
  """The logical axis names of every parameter (tuples, same tree as init_params)."""
  boxed = jax.eval_shape(lambda r: lcbm.init_boxed(cfg, r), jax.random.key(0))
  specs = nn.get_partition_spec(boxed)
  return jax.tree.map(tuple, specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def param_shardings(cfg: LCBMConfig, mesh: Mesh) -> dict:
  """NamedSharding for every parameter, same tree as lcbm.init_params(cfg, rng)."""
  shapes = lcbm.abstract_params(cfg)
  names = logical_axes(cfg)
  return jax.tree.map(lambda n, s: logical_sharding(n, s.shape, mesh), names, shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


def _key_names(path) -> tuple[str, ...]:
  return tuple(str(k.key) if isinstance(k, jax.tree_util.DictKey) else
               str(k.name) if isinstance(k, jax.tree_util.GetAttrKey) else str(getattr(k, "idx", k))
               for k in path)


def tree_shardings(tree: Any, cfg: LCBMConfig, mesh: Mesh) -> Any:
  """Shardings for any pytree holding parameter-shaped leaves (optimizer state, EMA, grads).

  A leaf whose path ends with a parameter's path (e.g. `...mu/llm/layers/mlp/up/kernel`) and has
  that parameter's shape is sharded like it; every other leaf (step counters, scalars) is replicated.
  """
  shapes = lcbm.abstract_params(cfg)
  names = logical_axes(cfg)
  by_path = {}
  for (path, shape), n in zip(jax.tree_util.tree_flatten_with_path(shapes)[0],
                              jax.tree.leaves(names, is_leaf=lambda x: isinstance(x, tuple))):
    by_path[_key_names(path)] = (tuple(shape.shape), n)
  depth = max(len(p) for p in by_path)
  replicated = NamedSharding(mesh, PartitionSpec())

  def one(path, leaf):
    keys = _key_names(path)
    shape = tuple(getattr(leaf, "shape", ()))
    for k in range(1, min(depth, len(keys)) + 1):
      hit = by_path.get(keys[-k:])
      if hit is not None and hit[0] == shape:
        return logical_sharding(hit[1], shape, mesh)
    return replicated

  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over ("data", "fsdp"); every other axis replicated."""
  return NamedSharding(mesh, PartitionSpec(axes.RULES["batch"]))


def make_global(batch: Mapping[str, np.ndarray], mesh: Mesh, sharding: NamedSharding | None = None) -> dict[str, Any]:
  """Process-local batch -> global jax.Arrays (leading axis over the mesh's batch axes).

  The host keys (`sample_ids`: int64, bookkeeping only) stay host numpy arrays: without jax x64
  they cannot be int64 device arrays.
  """
  sharding = batch_sharding(mesh) if sharding is None else sharding
  return {k: (v if k in HOST_KEYS else jax.make_array_from_process_local_data(sharding, v))
          for k, v in batch.items()}
