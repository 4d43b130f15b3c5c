"""Llama decoder, computed as transformers' `LlamaForCausalLM`.

RMSNorm (in float32, cast back, then scaled), RoPE with configurable theta (HF rotate_half),
grouped-query attention without biases, SwiGLU MLP (silu), tied or untied output embeddings.
Layers are one `nn.scan` (parameters stacked on a leading "layers" axis) wrapped in `nn.remat`
with the policy the config names; `scan=False` unrolls the same scan, so the layout never changes.
Logits are float32.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from lcbm_jax.model import attention
from lcbm_jax.model.presets import TextConfig


class RMSNorm(nn.Module):
  eps: float
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BTD):
    scale_D = self.param("scale", attention.ones_init(("embed",)), (x_BTD.shape[-1],), self.param_dtype)
    x32_BTD = x_BTD.astype(jnp.float32)
    x32_BTD = x32_BTD * jax.lax.rsqrt(jnp.mean(x32_BTD * x32_BTD, axis=-1, keepdims=True) + self.eps)
    return scale_D.astype(self.dtype) * x32_BTD.astype(self.dtype)


class MLP(nn.Module):
  cfg: TextConfig
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BTD):
    dense = functools.partial(attention.dense, dtype=self.dtype, param_dtype=self.param_dtype, use_bias=False)
    gate_BTF = dense(self.cfg.intermediate_size, ("embed", "mlp"), "gate")(x_BTD)
    up_BTF = dense(self.cfg.intermediate_size, ("embed", "mlp"), "up")(x_BTD)
    return dense(self.cfg.hidden_size, ("mlp", "embed"), "down")(jax.nn.silu(gate_BTF) * up_BTF)


class DecoderBlock(nn.Module):
  """One Llama layer: x in, x out; with this layer's cache (`attention.Attention`), the updated cache out."""
  cfg: TextConfig
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BTD, layer_cache, mask_BTS, positions_BT, cache_index, return_kv: bool = False):
    c = self.cfg
    x_BTD = attention.constrain(x_BTD, ("batch", "length", None))
    h_BTD = RMSNorm(c.rms_norm_eps, self.dtype, self.param_dtype, name="input_layernorm")(x_BTD)
    h_BTD, new_cache = attention.Attention(
        num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
        use_bias=False, rope_theta=c.rope_theta, causal=True, causal_block=c.attention_block, dtype=self.dtype,
        param_dtype=self.param_dtype, name="attn")(h_BTD, mask_BTS, positions_BT, layer_cache, cache_index,
                                                   return_kv)
    x_BTD = x_BTD + h_BTD
    h_BTD = RMSNorm(c.rms_norm_eps, self.dtype, self.param_dtype, name="post_attention_layernorm")(x_BTD)
    x_BTD = x_BTD + attention.over_tokens(MLP(c, self.dtype, self.param_dtype, name="mlp"), h_BTD)
    return x_BTD, new_cache


class LMHead(nn.Module):
  vocab_size: int
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x_BTD):
    kernel_DV = self.param("kernel", attention.dense_init(("embed", "vocab")),
                           (x_BTD.shape[-1], self.vocab_size), self.param_dtype)
    return attention.over_tokens(
        lambda x_ND: jnp.einsum("nd,dv->nv", x_ND, kernel_DV.astype(self.dtype), preferred_element_type=jnp.float32),
        x_BTD)


class LLM(nn.Module):
  """`embed(ids)` then `__call__(x, mask, positions, cache, cache_index) -> (logits float32, cache)`."""
  cfg: TextConfig
  remat_policy: str = "none"
  scan_unrolled: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    c = self.cfg
    self.embed_tokens = nn.Embed(
        c.vocab_size, c.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=attention.dense_init(("vocab", "embed")))
    block = DecoderBlock
    if self.remat_policy != "none":
      block = nn.remat(block, policy=attention.remat_policy(self.remat_policy), prevent_cse=False)
    self.layers = nn.scan(
        block, variable_axes={"params": 0}, split_rngs={"params": True},
        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
        length=c.num_hidden_layers, unroll=c.num_hidden_layers if self.scan_unrolled else 1,
        metadata_params={nn.PARTITION_NAME: "layers"})(c, self.dtype, self.param_dtype)
    self.norm = RMSNorm(c.rms_norm_eps, self.dtype, self.param_dtype)
    if not c.tie_word_embeddings:
      self.lm_head = LMHead(c.vocab_size, self.dtype, self.param_dtype)

  def _unrolled(self, x_BTD, mask_BTS, positions_BT):
    """The scanned layers as a Python loop over slices of the same stacked parameters. A scan stacks
    every layer's saved activations into [L, ...] buffers (zero-filled, written and read back by
    dynamic slices); unrolled, each layer keeps its own: on a 2-core CPU that traffic was a fifth
    of the bench step. Compiles take longer in proportion to depth, so big presets keep the scan."""
    c = self.cfg
    block = DecoderBlock(c, self.dtype, self.param_dtype, parent=None)   # unbound: applied to each slice
    body = lambda p, x: block.apply({"params": p}, x, None, mask_BTS, positions_BT, None)[0]
    if self.remat_policy != "none":
      body = jax.checkpoint(body, policy=attention.remat_policy(self.remat_policy), prevent_cse=False)
    stacked = self.variables["params"]["layers"]
    for i in range(c.num_hidden_layers):
      x_BTD = body(jax.tree.map(lambda w: w[i], stacked), x_BTD)
    return x_BTD

  def _cached(self, x_BTD, cache, mask_BTS, positions_BT, cache_index):
    """Decoding over a cache of one [B, K, S, d] buffer per layer (`lcbm.init_cache`). A prefill
    (cache_index 0) attends within its own T tokens, which is all the causal mask lets slots [0, T)
    see, so it runs as one scan over the layers like the training forward, and its keys and values fill
    the cache at once. Later calls (a token at a time) loop over the layers in Python: each layer's
    buffer is updated in place in the decode loop, and the weight slices, the same at every token,
    are computed once outside it (a scan would slice weights and restack the cache at every token)."""
    block = DecoderBlock(self.cfg, self.dtype, self.param_dtype, parent=None)   # unbound: applied to each layer
    stacked = self.variables["params"]["layers"]
    ks, vs = cache
    if isinstance(cache_index, int) and cache_index == 0:
      t = x_BTD.shape[1]

      def prefill(x_BTD, p):
        return block.apply({"params": p}, x_BTD, None, mask_BTS[:, :, :t], positions_BT, None, return_kv=True)
      x_BTD, (k_LBKTd, v_LBKTd) = jax.lax.scan(prefill, x_BTD, stacked)
      write = lambda buf, new: jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), (0, 0, 0, 0))
      return x_BTD, (tuple(write(b, k_LBKTd[i]) for i, b in enumerate(ks)),
                     tuple(write(b, v_LBKTd[i]) for i, b in enumerate(vs)))
    new_k, new_v = [], []
    for i in range(self.cfg.num_hidden_layers):
      # Weights from `lcbm.unstack_layers` come one tree per layer: slices of the stacked ones taken
      # inside a decode loop are copied at every token (XLA does not hoist them out of the loop).
      p = stacked[str(i)] if str(i) in stacked else jax.tree.map(lambda w: w[i], stacked)
      x_BTD, (k, v) = block.apply({"params": p}, x_BTD, (ks[i], vs[i]), mask_BTS, positions_BT, cache_index)
      new_k.append(k)
      new_v.append(v)
    return x_BTD, (tuple(new_k), tuple(new_v))

  def embed(self, input_ids_BT):
    # Gather the fsdp shards of the table first (what FSDP does for every weight); a lookup into
    # a table sharded on both axes makes XLA replicate the result and re-split it.
    emb_VD = attention.constrain(self.embed_tokens.embedding, ("vocab", None))
    return jnp.take(emb_VD, input_ids_BT, axis=0).astype(self.dtype)

  def __call__(self, x_BTD, mask_BTS, positions_BT, cache=None, cache_index=None, last_logits: bool = False):
    """cache: (k, v) each L buffers [B, K, S, d], or None. Returns (logits float32[B, T, V], new cache); with
    last_logits, the last position's only ([B, 1, V])."""
    x_BTD, new_cache = x_BTD.astype(self.dtype), None
    if self.is_initializing():
      x_BTD, _ = self.layers(x_BTD, None, mask_BTS, positions_BT, None)
    elif cache is not None:
      x_BTD, new_cache = self._cached(x_BTD, cache, mask_BTS, positions_BT, cache_index)
    elif self.scan_unrolled:
      x_BTD = self._unrolled(x_BTD, mask_BTS, positions_BT)
    else:
      x_BTD, _ = self.layers(x_BTD, None, mask_BTS, positions_BT, None)
    x_BTD = self.norm(x_BTD[:, -1:] if last_logits else x_BTD)
    if self.cfg.tie_word_embeddings:
      emb_VD = self.embed_tokens.embedding.astype(self.dtype)
      logits_BTV = attention.over_tokens(
          lambda x_ND: jnp.einsum("nd,vd->nv", x_ND, emb_VD, preferred_element_type=jnp.float32), x_BTD)
    else:
      logits_BTV = self.lm_head(x_BTD)
    return attention.constrain(logits_BTV, ("batch", "length", "vocab")), new_cache
