"""The LLaVA-style composition: CLIP tower -> projector -> image features spliced into Llama.

Full forward (training, scoring):

  params = init_params(cfg, rng)                                  # plain dict, docs/contracts.md §6
  logits_BLV = LCBM(cfg).apply({"params": params}, input_ids_BL, images_GIHW3, segment_ids_BL, positions_BL,
                               image_index=image_index_BL)       # a training batch (data_pipeline/batch.py)
  logits_BLV = LCBM(cfg).apply({"params": params}, input_ids_BL, images_BMHW3, segment_ids_BL, positions_BL)

`input_ids` already hold `num_image_tokens` copies of `image_token_id` per image. Images come one of
two ways. A training batch carries an image budget: `images[g]` are the images of group g, the
rows split into G equal blocks of consecutive rows, and `image_index[b, t]` names the feature an
image token takes (slot * P + patch within its group; -1 elsewhere), so the tower encodes G x I
images whatever the rows hold. Without `image_index`, `images[b, m]` is the m-th image of row b in
token order and the k-th image token of a row takes feature k of that row's images (one group per
row; what prediction and scoring pass). `images` may be None or hold no image for text-only batches. Attention is causal
inside a segment (`segment_ids` 1, 2, ... per packed sample, 0 = padding that attends nothing) and
RoPE reads `positions`; both come from the data, nothing is inferred here.

KV-cache decoding (used by `lcbm_jax.inference`):

  cache = init_cache(cfg, batch, max_length)                      # {"k", "v": L x [B,K,S,d], "segment_ids": [B,S]}
  logits, cache = LCBM(cfg).apply({"params": params}, ids_BT, images, seg_BT, pos_BT,
                                  cache=cache, cache_index=i)     # writes slots [i, i + T)

A call with a cache writes the T new tokens' keys/values and segment ids into slots
[cache_index, cache_index + T) and lets each new token attend to every earlier slot of its own
segment. Prefill is such a call at cache_index 0 with the whole (left-padded) prompt and its images;
each decode step is a call with T = 1 and images None. Image features must arrive in one call (the
token-to-feature count restarts at every call).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from lcbm_jax.model import attention
from lcbm_jax.model.llm import LLM
from lcbm_jax.model.presets import LCBMConfig
from lcbm_jax.model.projector import Projector
from lcbm_jax.model.vision import VisionTower


class LCBM(nn.Module):
  """The whole model; see the module docstring for the two ways to call it."""
  cfg: LCBMConfig

  def setup(self):
    c = self.cfg
    dt, pdt = jnp.dtype(c.compute_dtype), jnp.dtype(c.param_dtype)
    self.vision = VisionTower(c.vision, c.vision_feature_index, c.remat_policy, not c.scan, dt, pdt)
    self.projector = Projector(c.projector, c.text.hidden_size, dt, pdt)
    self.llm = LLM(c.text, c.remat_policy, not c.scan, dt, pdt)

  def image_features(self, images_GIHW3):
    """float[G, I, H, W, 3] -> float[G, I * P, D] in the LLM's embedding space."""
    g, i = images_GIHW3.shape[:2]
    feats_NPV = self.vision(images_GIHW3.reshape((g * i,) + images_GIHW3.shape[2:]))
    feats_NPD = self.projector(attention.constrain(feats_NPV, ("batch", "length", None)))
    feats_GND = feats_NPD.reshape(g, i * feats_NPD.shape[1], feats_NPD.shape[2])
    return attention.constrain(feats_GND, ("batch", "length", None))

  def embed(self, input_ids_BT, images, image_index_BT=None):
    x_BTD = attention.constrain(self.llm.embed(input_ids_BT), ("batch", "length", None))
    if images is None or images.shape[0] * images.shape[1] == 0:
      return x_BTD
    is_image_BT = input_ids_BT == self.cfg.image_token_id
    if image_index_BT is None:   # images[b, m]: row b's m-th image; its k-th image token takes feature k
      image_index_BT = jnp.where(is_image_BT, jnp.cumsum(is_image_BT, axis=1) - 1, -1)
    feats_GND = self.image_features(images).astype(x_BTD.dtype)
    g, n = feats_GND.shape[:2]
    b, t, d = x_BTD.shape
    # Each group's rows read only their own group's features: the gather has the group as a batch
    # dimension, so under data parallelism it stays on the shard that encoded them (no all-gather).
    index_GR = image_index_BT.reshape(g, (b // g) * t)
    valid_GR = is_image_BT.reshape(g, -1) & (index_GR >= 0) & (index_GR < n)
    gathered_GRD = jnp.take_along_axis(feats_GND, jnp.clip(index_GR, 0, n - 1)[:, :, None], axis=1)
    merged_GRD = jnp.where(valid_GR[:, :, None], gathered_GRD, x_BTD.reshape(g, -1, d))
    return attention.constrain(merged_GRD.reshape(b, t, d), ("batch", "length", None))

  def __call__(self, input_ids_BT, images, segment_ids_BT, positions_BT, cache=None, cache_index=None,
               image_index=None, last_logits: bool = False):
    """Returns logits float32[B, T, V]; with a cache, (logits, updated cache). last_logits: only the
    last position's, [B, 1, V] (a prefill that only samples the next token skips the other T - 1)."""
    x_BTD = self.embed(input_ids_BT, images, image_index)
    t = input_ids_BT.shape[1]
    if cache is None:
      slots_T = jnp.arange(t)
      mask_BTS = attention.segment_mask(segment_ids_BT, segment_ids_BT, slots_T[None, :], slots_T)
      logits_BTV, _ = self.llm(x_BTD, mask_BTS, positions_BT, last_logits=last_logits)
      return logits_BTV
    k_segment_BS = jax.lax.dynamic_update_slice(
        cache["segment_ids"], segment_ids_BT.astype(cache["segment_ids"].dtype), (0, cache_index))
    s = k_segment_BS.shape[1]
    q_slot_BT = (cache_index + jnp.arange(t))[None, :]
    mask_BTS = attention.segment_mask(segment_ids_BT, k_segment_BS, q_slot_BT, jnp.arange(s))
    logits_BTV, (k, v) = self.llm(x_BTD, mask_BTS, positions_BT, (cache["k"], cache["v"]), cache_index,
                                  last_logits=last_logits)
    return logits_BTV, {"k": k, "v": v, "segment_ids": k_segment_BS}


def _dummy_inputs(cfg: LCBMConfig):
  v = cfg.vision
  images = jnp.zeros((1, 1, v.image_size, v.image_size, 3), jnp.float32)
  ids = jnp.zeros((1, 4), jnp.int32)
  return ids, images, jnp.ones((1, 4), jnp.int32), jnp.arange(4, dtype=jnp.int32)[None]


def init_boxed(cfg: LCBMConfig, rng):
  """Params with their logical-axis metadata (nn.LogicallyPartitioned boxes); see sharding.py."""
  return LCBM(cfg).init(rng, *_dummy_inputs(cfg))["params"]


def init_params(cfg: LCBMConfig, rng) -> dict:
  """A plain nested dict of arrays with exactly the layout of docs/contracts.md §6."""
  return nn.meta.unbox(jax.jit(init_boxed, static_argnums=0)(cfg, rng))


def abstract_params(cfg: LCBMConfig) -> dict:
  """Shapes and dtypes of init_params (jax.ShapeDtypeStruct leaves) without allocating anything."""
  return nn.meta.unbox(jax.eval_shape(lambda r: init_boxed(cfg, r), jax.random.key(0)))


def param_count(cfg: LCBMConfig) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(abstract_params(cfg)))


def unstack_layers(params: dict) -> dict:
  """`params` with the decoder's stacked layers split into one tree per layer ({"0": ..., "1": ...}),
  for calls with a cache after the prefill (which needs them stacked). Why: a decode loop that slices the
  stacked weights copies every layer's weights at every token; split once before the loop, it reads them."""
  llm = dict(params["llm"])
  stacked = llm["layers"]
  n = jax.tree.leaves(stacked)[0].shape[0]
  llm["layers"] = {str(i): jax.tree.map(lambda w: w[i], stacked) for i in range(n)}
  return {**params, "llm": llm}


def init_cache(cfg: LCBMConfig, batch: int, max_length: int) -> dict:
  """An empty KV cache of `max_length` slots (segment id 0 = empty slot, never attended)."""
  t = cfg.text
  # One buffer per layer (each updated in place by the decode loop, llm.LLM._cached), head-major (attention.py).
  shape = (batch, t.num_key_value_heads, max_length, t.head_dim)
  dt = jnp.dtype(cfg.compute_dtype)
  layers = range(t.num_hidden_layers)
  return {"k": tuple(jnp.zeros(shape, dt) for _ in layers), "v": tuple(jnp.zeros(shape, dt) for _ in layers),
          "segment_ids": jnp.zeros((batch, max_length), jnp.int32)}
