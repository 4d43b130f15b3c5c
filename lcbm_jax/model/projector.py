"""LLaVA multimodal projector: linear_1 (Dv -> D), exact (erf) GELU, linear_2 (D -> D)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from lcbm_jax.model import attention
from lcbm_jax.model.presets import ProjectorConfig


class Projector(nn.Module):
  """features float[..., Dv] -> float[..., D] in the LLM's embedding space."""
  cfg: ProjectorConfig
  out_features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_NPV):
    # Both kernels split their output over "mlp" / input over "mlp" so no mesh axis appears twice.
    dense = lambda names, name: nn.Dense(
        self.out_features, use_bias=self.cfg.bias, dtype=self.dtype, param_dtype=self.param_dtype,
        name=name, kernel_init=attention.dense_init(names), bias_init=attention.zeros_init(names[1:]))
    l1, l2 = dense(("embed", "mlp"), "linear_1"), dense(("mlp", "embed"), "linear_2")
    return attention.over_tokens(lambda x: l2(jax.nn.gelu(l1(x), approximate=False)), x_NPV)
