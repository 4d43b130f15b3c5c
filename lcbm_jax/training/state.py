"""The train state: everything a step reads and writes, as one pytree.

Non-finite steps are counted here (not in Python) so the count survives checkpoint/resume and the
step function stays pure. There is no key in the state: the step key is fold_in(key(config.seed),
step), a function of the config and the step alone.
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
  nonfinite_in_row: jax.Array  # int32[]; consecutive steps whose loss or gradient was not finite
  nonfinite_total: jax.Array   # int32[]; all such steps of the run

  @classmethod
  def create(cls, params, opt_state) -> "TrainState":
    zero = jnp.zeros((), jnp.int32)
    return cls(step=zero, params=params, opt_state=opt_state,
               nonfinite_in_row=zero, nonfinite_total=zero)
