"""CLIP vision tower, computed exactly as transformers' `CLIPVisionModel`.

conv patch embedding (no bias) -> [class token; patches] + learned positions -> pre_layrnorm ->
pre-LN encoder blocks (biased q/k/v/o, quick_gelu MLP). LLaVA reads the hidden state of one layer
(`vision_feature_layer`, HF indexing: hidden_states[0] is the pre_layrnorm output) and drops the
class token. `post_layernorm` is created so checkpoints export to HF unchanged; LLaVA never uses it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import linen as nn

from lcbm_jax.model import attention
from lcbm_jax.model.presets import VisionConfig


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


def layer_norm(eps, dtype, param_dtype, name):
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, use_fast_variance=False,
                      scale_init=attention.ones_init(("embed",)), bias_init=attention.zeros_init(("embed",)),
                      name=name)


class VisionMLP(nn.Module):
  cfg: VisionConfig
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BTD):
    dense = functools.partial(attention.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    h_BTF = quick_gelu(dense(self.cfg.intermediate_size, ("embed", "mlp"), "fc1")(x_BTD))
    return dense(self.cfg.hidden_size, ("mlp", "embed"), "fc2")(h_BTF)


class VisionBlock(nn.Module):
  """One pre-LN CLIP encoder layer (scan body: carry x, no per-layer input)."""
  cfg: VisionConfig
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BTD, _):
    c = self.cfg
    x_BTD = attention.constrain(x_BTD, ("batch", "length", None))
    h_BTD = layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm1")(x_BTD)
    h_BTD, _ = attention.Attention(
        num_heads=c.num_attention_heads, num_kv_heads=c.num_attention_heads, head_dim=c.head_dim,
        use_bias=True, kv_axis="heads", dtype=self.dtype, param_dtype=self.param_dtype, name="attn")(h_BTD)
    x_BTD = x_BTD + h_BTD
    h_BTD = layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm2")(x_BTD)
    return x_BTD + attention.over_tokens(VisionMLP(c, self.dtype, self.param_dtype, name="mlp"), h_BTD), None


class PatchEmbed(nn.Module):
  """CLIP's patch embedding: a p x p convolution with stride p and no bias (kernel [p, p, 3, D], HWIO,
  as `nn.Conv` stores it), computed as patches x kernel: one matmul whose backward is a matmul too;
  XLA:CPU ran the convolution's weight gradient as a dilated convolution at a tenth of matmul speed."""
  patch_size: int
  features: int
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, images_NHW3):
    p, d = self.patch_size, self.features
    kernel = self.param("kernel", attention.dense_init((None, None, None, "embed")), (p, p, 3, d), self.param_dtype)
    # Row-major patches (as HF flattens the conv output), each flattened in the kernel's (row, col, channel) order.
    patches = rearrange(images_NHW3.astype(self.dtype), "n (h i) (w j) c -> n (h w) (i j c)", i=p, j=p)
    return attention.over_tokens(lambda x: x @ kernel.reshape(p * p * 3, d).astype(self.dtype), patches)


class VisionTower(nn.Module):
  """images float[N, H, W, 3] (CLIP-normalised) -> features float[N, P, Dv] (class token dropped)."""
  cfg: VisionConfig
  feature_index: int
  remat_policy: str = "none"
  scan_unrolled: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images_NHW3):
    c = self.cfg
    p = c.patch_size
    patches_NPD = PatchEmbed(p, c.hidden_size, self.dtype, self.param_dtype, name="patch_embed")(images_NHW3)
    n = patches_NPD.shape[0]
    cls_D = self.param("class_embedding", attention.dense_init(("embed",)), (c.hidden_size,), self.param_dtype)
    pos_TD = self.param("position_embedding", attention.dense_init((None, "embed")),
                        (c.num_patches + 1, c.hidden_size), self.param_dtype)
    cls_N1D = jnp.broadcast_to(cls_D.astype(self.dtype), (n, 1, c.hidden_size))
    x_NTD = jnp.concatenate([cls_N1D, patches_NPD], axis=1) + pos_TD.astype(self.dtype)
    x_NTD = layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "pre_layernorm")(x_NTD)
    # Created for export only; its output is unused (XLA drops the computation).
    layer_norm(c.layer_norm_eps, self.dtype, self.param_dtype, "post_layernorm")(x_NTD[:, :1])

    n_layers, k = c.num_hidden_layers, self.feature_index
    policy = None if self.remat_policy == "none" else attention.remat_policy(self.remat_policy)
    if self.is_initializing():
      block = VisionBlock if policy is None else nn.remat(VisionBlock, policy=policy, prevent_cse=False)
      layers = nn.scan(
          block, variable_axes={"params": 0}, split_rngs={"params": True}, length=n_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})(c, self.dtype, self.param_dtype, name="layers")
      x_NTD, _ = layers(x_NTD, None)
    else:
      # LLaVA reads hidden_states[k] (k < L, usually L - 1): run only the first k layers' slice of the
      # stacked weights, so later layers (kept for export) cost no compute and get zero gradients.
      # Unrolled (scan=False), a Python loop: no stacked activation buffers (see llm.LLM._unrolled).
      first_k = jax.tree.map(lambda w: w[:k], self.variables["params"]["layers"])
      body = lambda x, p: VisionBlock(c, self.dtype, self.param_dtype).apply({"params": p}, x, None)
      if policy is not None:
        body = jax.checkpoint(body, policy=policy, prevent_cse=False)
      if self.scan_unrolled:
        for i in range(k):
          x_NTD, _ = body(x_NTD, jax.tree.map(lambda w: w[i], first_k))
      else:
        x_NTD, _ = jax.lax.scan(body, x_NTD, first_k)
    return x_NTD[:, 1:]
