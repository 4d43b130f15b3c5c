"""Attention shared by the CLIP tower and the Llama decoder, plus the pieces around it.

One `Attention` module covers both: CLIP (biased q/k/v/o, no RoPE, every patch sees every patch)
and Llama (no bias, RoPE, grouped-query heads, causal masks from segment ids, optional KV cache).
Masks are never guessed here: callers pass a boolean `mask_BTS` built from the data's segment ids
(`segment_mask`). Softmax runs in float32 whatever the compute dtype.

Shape suffixes: B batch, T query length, S key length (cache slots), H query heads, K key/value
heads, G = H // K query heads per kv head, d head dim, D model width.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import linen as nn
from jax.ad_checkpoint import checkpoint_name

from lcbm_jax import axes

# Large negative instead of -inf: a row with nothing to attend (padding) gets a harmless uniform
# softmax rather than NaNs that would leak into gradients.
_MASKED = -1e30


def dense_init(names: tuple[str | None, ...], stddev: float = 0.02):
  return nn.with_logical_partitioning(nn.initializers.normal(stddev), names)


def zeros_init(names: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def dense(features: int, names: tuple[str | None, str | None], name: str, *, dtype, param_dtype,
          use_bias: bool = True) -> nn.Dense:
  """A projection whose kernel carries the logical axes `names` (input, output) and its bias the output's."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, name=name,
                  kernel_init=dense_init(names), bias_init=zeros_init(names[1:]))


def over_tokens(fn, x):
  """`fn` applied to `x` flattened to [tokens, features], the result reshaped back.

  Why: XLA:CPU feeds a weight gradient's matmul a transposed copy of the activation gradient; for a
  2-D operand that copy is a fast tiled transpose, for a [B, T, F] operand a strided loop that took
  more time than the matmuls (the demo MLP's forward + backward: 80 ms 3-D vs 39 ms 2-D)."""
  y = fn(x.reshape(-1, x.shape[-1]))
  return y.reshape(x.shape[:-1] + y.shape[1:])


def ones_init(names: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.ones_init(), names)


def constrain(x, names: tuple[str | None, ...]):
  """Pins an activation's layout by logical axis names while a mesh is set (`jax.set_mesh`, see
  sharding.py); a no-op otherwise. Without it XLA may gather batch-sharded activations under FSDP."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, axes.logical_to_spec(names, x.shape, mesh))


def remat_policy(name: str):
  """The jax.checkpoint policy a config string names ("none" means no remat at all)."""
  if name == "full":
    return jax.checkpoint_policies.nothing_saveable
  if name == "dots":
    return jax.checkpoint_policies.dots_saveable
  if name == "save_attn_out":
    return jax.checkpoint_policies.save_only_these_names("attn_out")
  raise ValueError(f"no checkpoint policy for remat_policy {name!r}")


def segment_mask(q_segment_BT, k_segment_BS, q_slot_BT, k_slot_S):
  """Causal attention inside one packed sample: same nonzero segment id and key slot <= query slot."""
  same_BTS = q_segment_BT[:, :, None] == k_segment_BS[:, None, :]
  real_BT1 = (q_segment_BT != 0)[:, :, None]
  causal_BTS = k_slot_S[None, None, :] <= q_slot_BT[:, :, None]
  return same_BTS & real_BT1 & causal_BTS


def rotate_half(x):
  """HF Llama convention: the two halves of the head dim form the (real, imaginary) pairs."""
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x_BTHd, positions_BT, theta: float):
  d = x_BTHd.shape[-1]
  inv_freq_h = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  freqs_BTh = positions_BT.astype(jnp.float32)[..., None] * inv_freq_h
  emb_BTd = jnp.concatenate([freqs_BTh, freqs_BTh], axis=-1)
  cos_BT1d = jnp.cos(emb_BTd)[:, :, None, :].astype(x_BTHd.dtype)
  sin_BT1d = jnp.sin(emb_BTd)[:, :, None, :].astype(x_BTHd.dtype)
  return x_BTHd * cos_BT1d + rotate_half(x_BTHd) * sin_BT1d


def dot_product_attention(q_BTHd, k_BSKd, v_BSKd, mask_BTS=None):
  """Grouped-query attention; query head h reads kv head h // G (HF `repeat_kv` order)."""
  return _token_major(_attend(*_head_major(q_BTHd, k_BSKd, v_BSKd), mask_BTS))


def _head_major(q_BTHd, k_BSKd, v_BSKd):
  """q [B, T, H, d] -> [B, K, G, T, d]; k, v [B, S, K, d] -> [B, K, S, d]."""
  q_BKGTd = rearrange(q_BTHd, "b t (k g) d -> b k g t d", k=k_BSKd.shape[2])
  return q_BKGTd, jnp.swapaxes(k_BSKd, 1, 2), jnp.swapaxes(v_BSKd, 1, 2)


def _token_major(out_BKGTd):
  return rearrange(out_BKGTd, "b k g t d -> b t (k g) d")


def _attend(q_BKGTd, k_BKSd, v_BKSd, mask_BTS):
  """The softmax attention itself, head-major: the matmuls see [b, k] batch dims and contiguous
  [t, d] / [s, d] matrices, so XLA:CPU transposes q, k, v and the output once rather than the
  float32 score tensors in every matmul of the backward pass."""
  d = q_BKGTd.shape[-1]
  scores_BKGTS = jnp.einsum("bkgtd,bksd->bkgts", q_BKGTd, k_BKSd,
                            preferred_element_type=jnp.float32) * (d ** -0.5)
  if mask_BTS is not None:
    scores_BKGTS = jnp.where(mask_BTS[:, None, None, :, :], scores_BKGTS, _MASKED)
  probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(v_BKSd.dtype)
  return jnp.einsum("bkgts,bksd->bkgtd", probs_BKGTS, v_BKSd)


def causal_attention(q_BTHd, k_BTKd, v_BTKd, mask_BTT, block: int):
  """`dot_product_attention` for a mask that is causal in slot order (key slot > query slot is
  always masked): query block i reads keys [0, (i + 1) * block) only. Rows with at least one
  visible key get the same result (the skipped keys have zero weight); fully masked rows
  (padding) may differ, and nothing reads them. block 0 = full attention (as does a length that
  `block` does not divide). The model takes `block` from `TextConfig.attention_block`."""
  t = q_BTHd.shape[1]
  if block <= 0 or t <= block or t % block:
    return dot_product_attention(q_BTHd, k_BTKd, v_BTKd, mask_BTT)
  q_BKGTd, k_BKTd, v_BKTd = _head_major(q_BTHd, k_BTKd, v_BTKd)
  outs = [_attend(q_BKGTd[:, :, :, lo:lo + block], k_BKTd[:, :, :lo + block], v_BKTd[:, :, :lo + block],
                  mask_BTT[:, lo:lo + block, :lo + block])
          for lo in range(0, t, block)]
  return _token_major(jnp.concatenate(outs, axis=3))


class HeadDense(nn.Module):
  """`nn.DenseGeneral` over tokens with the checkpoint's kernel shape ([D, H, d] in, or [H, d, D] out)
  computed as one 2-D matmul: x [N, *in_shape] -> [N, *out_shape]. A 3-D operand would make
  XLA:CPU transpose the head gradients in a strided loop in the backward pass (see `over_tokens`)."""
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]
  names: tuple[str | None, ...]     # logical axes of the kernel, in_shape's then out_shape's
  use_bias: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
    kernel = self.param("kernel", dense_init(self.names), self.in_shape + self.out_shape, self.param_dtype)
    y = jnp.dot(x.reshape(-1, n_in).astype(self.dtype), kernel.reshape(n_in, n_out).astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", zeros_init(self.names[len(self.in_shape):]), self.out_shape, self.param_dtype)
      y = y + bias.reshape(n_out).astype(self.dtype)
    return y.reshape(x.shape[:x.ndim - len(self.in_shape)] + self.out_shape)


class Attention(nn.Module):
  """Multi-head attention with projections named q, k, v, o (kernels [D,H,d] / [H,d,D])."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  use_bias: bool
  rope_theta: float | None = None   # None = no rotary embedding (CLIP)
  causal: bool = False              # callers' masks are causal in slot order (the Llama decoder)
  causal_block: int = 0             # query rows per block of causal_attention (0 = full attention)
  kv_axis: str = "kv_heads"         # logical name of the key/value head axis
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _proj(self, name, d_model, heads, head_axis):
    return HeadDense((d_model,), (heads, self.head_dim), ("embed", head_axis, "head_dim"), self.use_bias,
                     self.dtype, self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x_BTD, mask_BTS=None, positions_BT=None, cache=None, cache_index=None, return_kv: bool = False):
    """Returns (out_BTD, new_cache). `cache` = (k_BKSd, v_BKSd): this layer's slots, head-major (the
    layout the attention matmuls read, so nothing is transposed per token); the T new keys go to slots
    [cache_index, cache_index + T) and the queries attend over all S slots under mask_BTS. return_kv
    (no cache): new_cache is this call's own keys and values, head-major [B, K, T, d] (a prefill's)."""
    d_model = x_BTD.shape[-1]
    q_BTHd = self._proj("q", d_model, self.num_heads, "heads")(x_BTD)
    k_BTKd = self._proj("k", d_model, self.num_kv_heads, self.kv_axis)(x_BTD)
    v_BTKd = self._proj("v", d_model, self.num_kv_heads, self.kv_axis)(x_BTD)
    if self.rope_theta is not None:
      q_BTHd = apply_rope(q_BTHd, positions_BT, self.rope_theta)
      k_BTKd = apply_rope(k_BTKd, positions_BT, self.rope_theta)
    q_BTHd = checkpoint_name(q_BTHd, "query")
    k_BTKd = checkpoint_name(k_BTKd, "key")
    v_BTKd = checkpoint_name(v_BTKd, "value")
    new_cache = None
    if cache is not None:
      k_BKSd, v_BKSd = cache
      q_BKGTd, k_BKTd, v_BKTd = _head_major(q_BTHd, k_BTKd, v_BTKd)
      k_BKSd = jax.lax.dynamic_update_slice(k_BKSd, k_BKTd.astype(k_BKSd.dtype), (0, 0, cache_index, 0))
      v_BKSd = jax.lax.dynamic_update_slice(v_BKSd, v_BKTd.astype(v_BKSd.dtype), (0, 0, cache_index, 0))
      new_cache = (k_BKSd, v_BKSd)
      out_BTHd = _token_major(_attend(q_BKGTd, k_BKSd.astype(self.dtype), v_BKSd.astype(self.dtype), mask_BTS))
    elif self.causal and mask_BTS is not None:
      out_BTHd = causal_attention(q_BTHd, k_BTKd, v_BTKd, mask_BTS, self.causal_block)
    else:
      out_BTHd = dot_product_attention(q_BTHd, k_BTKd, v_BTKd, mask_BTS)
    if return_kv and cache is None:
      new_cache = (jnp.swapaxes(k_BTKd, 1, 2), jnp.swapaxes(v_BTKd, 1, 2))
    out_BTHd = checkpoint_name(out_BTHd, "attn_out")
    out_BTD = HeadDense((self.num_heads, self.head_dim), (d_model,), ("heads", "head_dim", "embed"),
                        self.use_bias, self.dtype, self.param_dtype, name="o")(out_BTHd)
    return out_BTD, new_cache
