"""Model forward: image splicing, segment isolation, feature layer, remat/scan and precision variants."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcbm_jax.model import lcbm, presets

CFG = presets.get("tiny")
P = CFG.num_image_tokens
IMG = CFG.image_token_id
V = CFG.text.vocab_size


@pytest.fixture(scope="module")
def params():
  return lcbm.init_params(CFG, jax.random.key(0))


LENGTH = 64   # every batch is padded to this so the compiled forward is reused across tests
SLOTS = 3     # image slots per row


@functools.lru_cache(maxsize=None)
def _jitted(cfg):
  return jax.jit(lambda p, i, im, s, q: lcbm.LCBM(cfg).apply({"params": p}, i, im, s, q))


def _forward(cfg, params, ids, images, seg, pos):
  return np.asarray(_jitted(cfg)(params, jnp.asarray(ids), None if images is None else jnp.asarray(images),
                                 jnp.asarray(seg), jnp.asarray(pos)))


def _text(rng, n):
  return list(rng.integers(5, V, n))


def _single_segment(rows, length=LENGTH):
  ids = np.zeros((len(rows), length), np.int32)
  seg = np.zeros_like(ids)
  for i, r in enumerate(rows):
    ids[i, :len(r)] = r
    seg[i, :len(r)] = 1
  pos = np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape).copy()
  return ids, seg, pos


def _images(rng, b, m=SLOTS):
  return rng.normal(size=(b, m, CFG.vision.image_size, CFG.vision.image_size, 3)).astype(np.float32)


def test_zero_one_three_images_per_sample(params):
  rng = np.random.default_rng(0)
  rows = [[1] + _text(rng, 20),                                            # text only
          [1] + _text(rng, 3) + [IMG] * P + _text(rng, 5),                  # one image
          [1] + [IMG] * P + _text(rng, 2) + [IMG] * P + [IMG] * P + _text(rng, 3)]   # three (video frames)
  ids, seg, pos = _single_segment(rows)
  images = _images(rng, 3)
  logits = _forward(CFG, params, ids, images, seg, pos)
  assert logits.shape == (3, LENGTH, V) and logits.dtype == np.float32
  assert np.isfinite(logits).all()
  # The text-only row is the same with images=None and with a zero-slot image array.
  for no_images in (None, np.zeros((3, 0) + images.shape[2:], np.float32)):
    text_only = _forward(CFG, params, ids, no_images, seg, pos)
    np.testing.assert_allclose(text_only[0], logits[0], atol=1e-5)
    assert np.abs(text_only[2] - logits[2]).max() > 1e-3   # image rows really used their images


def test_segments_isolated_and_positions_restart(params):
  rng = np.random.default_rng(1)
  s1 = [1] + _text(rng, 7) + [IMG] * P + _text(rng, 4)
  s2 = [1] + _text(rng, 12)
  ids = np.zeros((1, LENGTH), np.int32)
  seg = np.zeros_like(ids)
  pos = np.zeros_like(ids)
  ids[0, :len(s1)], seg[0, :len(s1)], pos[0, :len(s1)] = s1, 1, np.arange(len(s1))
  e = len(s1) + len(s2)
  ids[0, len(s1):e], seg[0, len(s1):e], pos[0, len(s1):e] = s2, 2, np.arange(len(s2))
  images = _images(rng, 1)
  packed = _forward(CFG, params, ids, images, seg, pos)

  changed = ids.copy()
  changed[0, len(s1):e] = _text(rng, len(s2))
  other = _forward(CFG, params, changed, images, seg, pos)
  np.testing.assert_array_equal(other[0, :len(s1)], packed[0, :len(s1)])
  assert np.abs(other[0, len(s1):e] - packed[0, len(s1):e]).min() > 0

  # Each packed segment equals the same sample alone in its own row (positions restart at 0).
  ids1, seg1, pos1 = _single_segment([s1])
  alone1 = _forward(CFG, params, ids1, images, seg1, pos1)
  np.testing.assert_allclose(packed[0, :len(s1)], alone1[0, :len(s1)], atol=1e-5)
  ids2, seg2, pos2 = _single_segment([s2])
  alone2 = _forward(CFG, params, ids2, None, seg2, pos2)
  np.testing.assert_allclose(packed[0, len(s1):e], alone2[0, :len(s2)], atol=1e-5)


def test_image_reaches_only_tokens_after_it(params):
  rng = np.random.default_rng(2)
  first, second = 6, 6 + P + 4
  row = [1] + _text(rng, 5) + [IMG] * P + _text(rng, 4) + [IMG] * P + _text(rng, 6)
  assert row[first] == IMG and row[first - 1] != IMG and row[second] == IMG and row[second - 1] != IMG
  ids, seg, pos = _single_segment([row])
  images = _images(rng, 1)
  base = _forward(CFG, params, ids, images, seg, pos)
  for slot, start in ((0, first), (1, second)):
    other_images = images.copy()
    other_images[0, slot] = _images(rng, 1, 1)[0, 0]
    other = _forward(CFG, params, ids, other_images, seg, pos)
    np.testing.assert_array_equal(other[0, :start], base[0, :start])
    assert np.abs(other[0, start:] - base[0, start:]).max(axis=-1).min() > 0   # every later token moved


def test_feature_layer_selects_hidden_state(params):
  """With layer -2 the last CLIP layer is unused (as in LLaVA); with -1 it matters."""
  rng = np.random.default_rng(3)
  row = [1] + [IMG] * P + _text(rng, 3)
  ids, seg, pos = _single_segment([row])
  images = _images(rng, 1)
  perturbed = jax.tree.map(lambda x: x, params)
  fc2 = perturbed["vision"]["layers"]["mlp"]["fc2"]
  fc2["bias"] = fc2["bias"].at[-1].add(1.0)   # only the last layer
  for layer, moves in ((-2, False), (-1, True)):
    cfg = dataclasses.replace(CFG, vision_feature_layer=layer)
    diff = np.abs(_forward(cfg, perturbed, ids, images, seg, pos) - _forward(cfg, params, ids, images, seg, pos))
    assert (diff.max() > 1e-4) == moves, (layer, diff.max())


def _loss_and_grads(cfg, params, batch):
  ids, images, seg, pos = batch

  def loss(p):
    logits = lcbm.LCBM(cfg).apply({"params": p}, ids, images, seg, pos)
    return -jnp.mean(jax.nn.log_softmax(logits[:, :-1])[..., 0] * jnp.cos(logits[:, 1:, 1]))

  return jax.jit(jax.value_and_grad(loss))(params)


def test_remat_policies_and_unrolled_scan_agree(params):
  rng = np.random.default_rng(4)
  row = [1] + [IMG] * P + _text(rng, 10)
  ids, seg, pos = _single_segment([row, row[:12]])
  batch = (jnp.asarray(ids), jnp.asarray(_images(rng, 2)), jnp.asarray(seg), jnp.asarray(pos))
  ref_loss, ref_grads = _loss_and_grads(CFG, params, batch)
  for policy in presets.REMAT_POLICIES[1:]:   # remat only changes the backward pass: compare grads
    loss, grads = _loss_and_grads(dataclasses.replace(CFG, remat_policy=policy), params, batch)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), grads, ref_grads)
  unrolled = _forward(dataclasses.replace(CFG, scan=False), params, *batch)
  np.testing.assert_allclose(unrolled, _forward(CFG, params, *batch), atol=1e-5)


def test_bfloat16_compute_close_to_float32(params):
  rng = np.random.default_rng(5)
  row = [1] + [IMG] * P + _text(rng, 10)
  ids, seg, pos = _single_segment([row])
  images = _images(rng, 1)
  f32 = _forward(CFG, params, ids, images, seg, pos)
  bf16 = _forward(dataclasses.replace(CFG, compute_dtype="bfloat16"), params, ids, images, seg, pos)
  assert bf16.dtype == np.float32   # logits stay float32
  assert np.abs(bf16 - f32).max() < 0.05 * np.abs(f32).max()
  assert np.abs(bf16 - f32).max() > 0   # really computed in a different precision
  bf16_params = lcbm.abstract_params(dataclasses.replace(CFG, param_dtype="bfloat16"))
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16_params))


def test_causal_block_attention_matches_jax_reference():
  """The block-skipping path the decoder takes on long rows equals jax.nn.dot_product_attention on
  every real query row (packed segments, padding, grouped-query heads), values and gradients."""
  from lcbm_jax.model import attention
  b, t, h, kv, d = 2, 384, 4, 2, 8
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(b, t, n, d)), jnp.float32) for n in (h, kv, kv))
  seg = np.zeros((b, t), np.int32)
  seg[0, :150], seg[0, 150:300], seg[1, :40], seg[1, 40:381] = 1, 2, 1, 2   # crosses block edges; padding
  slots = jnp.arange(t)
  mask = attention.segment_mask(jnp.asarray(seg), jnp.asarray(seg), slots[None, :], slots)
  real = jnp.asarray(seg != 0)[:, :, None, None]

  def ours(q, k, v):
    return attention.causal_attention(q, k, v, mask, block=128)

  def reference(q, k, v):
    rep = lambda x: jnp.repeat(x, h // kv, axis=2)
    return jax.nn.dot_product_attention(q, rep(k), rep(v), mask=mask[:, None], implementation="xla")

  np.testing.assert_allclose(np.where(real, ours(q, k, v), 0), np.where(real, reference(q, k, v), 0),
                             atol=1e-5)
  loss = lambda f: lambda *a: jnp.sum(jnp.where(real, f(*a), 0.0) ** 2)
  for g_ours, g_ref in zip(jax.grad(loss(ours), (0, 1, 2))(q, k, v), jax.grad(loss(reference), (0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(g_ours, g_ref, atol=1e-4)


def test_attention_block_comes_from_the_model_config(params):
  """`text.attention_block` reaches the decoder: block-skipping (64) and full attention (0) trace
  different programs and give the same logits on every real row (packed segments, padding)."""
  rng = np.random.default_rng(5)
  rows = [[1] + _text(rng, 150), [1] + _text(rng, 100) + [IMG] * P + _text(rng, 40)]
  ids, seg, pos = _single_segment(rows, length=192)
  seg[0, 80:151] = 2
  pos[0, 80:] = np.arange(192 - 80)
  images = _images(rng, 2, m=1)
  with_block = lambda block: dataclasses.replace(CFG, text=dataclasses.replace(CFG.text, attention_block=block))
  blocked, full = with_block(64), with_block(0)
  trace = lambda cfg: str(jax.make_jaxpr(lambda p: lcbm.LCBM(cfg).apply({"params": p}, ids, images, seg, pos))(params))
  assert trace(blocked) != trace(full)
  real = seg != 0
  np.testing.assert_allclose(_forward(blocked, params, ids, images, seg, pos)[real],
                             _forward(full, params, ids, images, seg, pos)[real], atol=1e-5)
