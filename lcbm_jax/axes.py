"""Logical axis names and the one table that maps them onto mesh axes (a leaf: imports no project module).

The model names every weight and activation dimension with a logical axis (`batch`, `length`,
`embed`, `mlp`, `heads`, `kv_heads`, `head_dim`, `vocab`, `layers`); `LOGICAL_AXIS_RULES` maps
those names onto the mesh axes `MESH_AXES`. Both the model (`attention.constrain`) and
`sharding.py` (shardings for params, state and batches) read it from here, so neither imports
the other.
"""
from __future__ import annotations

import math
from typing import Sequence

from jax.sharding import Mesh, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# The one table: logical axis -> mesh axis (or axes, or None = replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
)
RULES = dict(LOGICAL_AXIS_RULES)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
  """PartitionSpec for one array; a dim that its mesh axes do not divide (or whose mesh axis an
  earlier dim already took) stays replicated. `mesh` may be abstract (only its axis sizes are read)."""
  if len(names) != len(shape):
    raise ValueError(f"logical axes {tuple(names)} do not match shape {tuple(shape)}")
  used: set[str] = set()
  spec = []
  for name, size in zip(names, shape):
    axes = RULES.get(name) if name is not None else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
    if not axes or size % math.prod(mesh.shape[a] for a in axes):
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)
