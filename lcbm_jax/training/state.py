"""The train state: everything a step reads and writes, as one pytree.

Non-finite steps are counted here (not in Python) so the count survives checkpoint/resume and the
step function stays pure.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32[]; the number of train_step calls so far (skipped ones included)
  params: Any                # the model's nested dict of parameters
  opt_state: Any             # optax state of `optim.make_optimizer`
  rng: jax.Array             # base key; each step uses fold_in(rng, step), so resume is exact
  nonfinite_in_row: jax.Array  # int32[]; consecutive steps whose loss or gradient was not finite
  nonfinite_total: jax.Array   # int32[]; all such steps of the run

  @classmethod
  def create(cls, params, opt_state, rng) -> "TrainState":
    zero = jnp.zeros((), jnp.int32)
    return cls(step=zero, params=params, opt_state=opt_state, rng=rng,
               nonfinite_in_row=zero, nonfinite_total=zero)
