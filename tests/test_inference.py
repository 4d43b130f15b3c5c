"""KV-cache decoding and scoring agree with the full forward pass."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcbm_jax import inference
from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets

CFG = presets.get("tiny")
P = CFG.num_image_tokens
IMG = CFG.image_token_id
V = CFG.text.vocab_size
MODEL = lcbm.LCBM(CFG)


@pytest.fixture(scope="module")
def params():
  # Larger-than-init weights give decisive argmaxes, so greedy comparisons are not decided by float noise.
  return jax.tree.map(lambda x: x * 4.0, lcbm.init_params(CFG, jax.random.key(0)))


@pytest.fixture(scope="module")
def prompts():
  rng = np.random.default_rng(0)
  text = lambda n: list(rng.integers(5, V, n))
  rows = [[1] + text(4),
          [1] + text(2) + [IMG] * P + text(7),
          [1] + [IMG] * P + text(1) + [IMG] * P + text(3)]
  images = rng.normal(size=(3, 2, 32, 32, 3)).astype(np.float32)
  return rows, images


@functools.lru_cache(maxsize=None)
def _full_fn():
  return jax.jit(lambda p, i, im, s, q: MODEL.apply({"params": p}, i, im, s, q))


def _full_logits(params, row, images_m):
  """Logits of one unpadded row (batch of 1), padded to 64 so one compilation serves every call."""
  ids = np.zeros((1, 64), np.int32)
  ids[0, :len(row)] = row
  seg = (np.arange(64) < len(row)).astype(np.int32)[None]
  pos = np.arange(64, dtype=np.int32)[None]
  return np.asarray(_full_fn()(params, ids, images_m[None], seg, pos))[0, :len(row)]


def test_prefill_then_decode_equals_full_forward(params, prompts):
  rows, images = prompts
  steps = 4
  rng = np.random.default_rng(1)
  conts = [list(rng.integers(5, V, steps)) for _ in rows]
  plen = max(map(len, rows))
  ids = np.zeros((3, plen), np.int32)
  seg = np.zeros_like(ids)
  pos = np.zeros_like(ids)
  for b, r in enumerate(rows):   # left padding, positions from each row's first real token
    ids[b, plen - len(r):], seg[b, plen - len(r):], pos[b, plen - len(r):] = r, 1, np.arange(len(r))
  cache = lcbm.init_cache(CFG, 3, plen + steps)
  prefill = jax.jit(lambda p, i, im, s, q, c: MODEL.apply({"params": p}, i, im, s, q, cache=c, cache_index=0))
  logits, cache = prefill(params, ids, images, seg, pos, cache)
  got = [np.asarray(logits[:, -1])]
  step = jax.jit(lambda p, t, q, c, i: MODEL.apply({"params": p}, t, None, jnp.ones_like(t), q, cache=c, cache_index=i))
  for k in range(steps - 1):
    tok = np.array([[c[k]] for c in conts], np.int32)
    logits, cache = step(params, tok, pos[:, -1:] + 1 + k, cache, plen + k)
    got.append(np.asarray(logits[:, 0]))
  for b, r in enumerate(rows):
    full = _full_logits(params, r + conts[b][:steps - 1], images[b])
    want = full[len(r) - 1:]
    np.testing.assert_allclose(np.stack([g[b] for g in got]), want, atol=1e-4, rtol=0)   # logits up to ~13


def test_greedy_generate_is_argmax_of_full_forward(params, prompts):
  rows, images = prompts
  out = inference.generate(CFG, params, rows, images, max_new_tokens=6, eos_id=None)
  assert out == inference.generate(CFG, params, rows, images, max_new_tokens=6, eos_id=None)
  for b, r in enumerate(rows):
    assert len(out[b]) == 6
    seq = list(r)
    for tok in out[b]:
      assert tok == int(np.argmax(_full_logits(params, seq, images[b])[-1]))
      seq.append(tok)


def test_eos_stops_each_row(params, prompts):
  rows, images = prompts
  out = inference.generate(CFG, params, rows, images, max_new_tokens=6, eos_id=None)
  eos = out[0][2]
  stopped = inference.generate(CFG, params, rows, images, max_new_tokens=6, eos_id=eos)
  for full, cut in zip(out, stopped):
    want = full[:full.index(eos)] if eos in full else full
    assert cut == want
  assert len(stopped[0]) == 2


def test_sampling_gives_valid_reproducible_ids(params, prompts):
  rows, images = prompts
  greedy = inference.generate(CFG, params, rows, images, max_new_tokens=6, eos_id=None)
  sample = functools.partial(inference.generate, CFG, params, rows, images, max_new_tokens=6, eos_id=None)
  a = sample(temperature=1.5, top_p=0.9, rng=jax.random.key(1))
  assert a == sample(temperature=1.5, top_p=0.9, rng=jax.random.key(1))
  runs = [a] + [sample(temperature=5.0, top_p=1.0, rng=jax.random.key(s)) for s in range(2, 5)]
  for run in runs:
    assert all(len(r) == 6 and all(0 <= t < V for t in r) for r in run)
  assert any(run != greedy for run in runs)
  # A tiny nucleus keeps only the most likely token: sampling turns greedy.
  assert sample(temperature=1.0, top_p=1e-6, rng=jax.random.key(7)) == greedy


def test_score_equals_full_forward_log_softmax(params, prompts):
  rows, images = prompts
  rng = np.random.default_rng(2)
  conts = [list(rng.integers(5, V, n)) for n in (3, 1, 5)]
  scores = inference.score(CFG, params, rows, conts, images)
  for b, (r, c) in enumerate(zip(rows, conts)):
    logp = jax.nn.log_softmax(_full_logits(params, r + c, images[b]).astype(np.float64), axis=-1)
    want = np.array([logp[len(r) - 1 + k, t] for k, t in enumerate(c)])
    np.testing.assert_allclose(scores.per_token[b], want, atol=1e-4)
    np.testing.assert_allclose(scores.total[b], want.sum(), atol=1e-4)


def test_bad_inputs_raise_user_error(params, prompts):
  rows, images = prompts
  with pytest.raises(UserError, match="image tokens"):
    inference.generate(CFG, params, rows, None, max_new_tokens=2, eos_id=None)
  with pytest.raises(UserError, match="image tokens"):
    inference.score(CFG, params, [[1] + [IMG] * (P - 1)], [[5]], images[:1])
  with pytest.raises(UserError, match="vocabulary"):
    inference.score(CFG, params, [[1, V]], [[5]])
  with pytest.raises(UserError, match="rng"):
    inference.generate(CFG, params, rows[:1], None, max_new_tokens=2, eos_id=None, temperature=1.0)


@pytest.mark.parametrize("fsdp", [1, 8], ids=["1-device", "8-devices"])
def test_prefix_shared_option_scores_equal_independent_score_calls(params, fsdp):
  """score_options (one prefill, every option continuing the cache) = score() of each (prompt, option)
  pair on its own, on one device and with the parameters sharded over 8 (fsdp)."""
  from lcbm_jax import sharding

  rng = np.random.default_rng(3)
  prompts = [[1, *rng.integers(5, V, 9)], [1, *[IMG] * P, *rng.integers(5, V, 20)], [1, 7]]
  options = [[[5, 6, 7], [8], [3, 3]], [[9], [10, 11], [12, 13, 14, 15, 16], [17]], [[40, 41]]]
  images = rng.normal(size=(3, CFG.max_images, CFG.vision.image_size, CFG.vision.image_size, 3)).astype(np.float32)
  p = params
  if fsdp > 1:
    mesh = sharding.make_mesh(data=1, fsdp=fsdp, tensor=1)
    p = jax.device_put(params, sharding.param_shardings(CFG, mesh))
    assert len(jax.tree.leaves(p)[0].sharding.device_set) == 8
  got = inference.score_options(CFG, p, prompts, options, images, k=4)
  assert got.shape == (3, 4) and np.all(got[0, 3:] == 0) and np.all(got[2, 1:] == 0)   # unused slots
  for i, opts in enumerate(options):
    want = inference.score(CFG, p, [prompts[i]] * len(opts), opts, images[[i] * len(opts)]).total
    np.testing.assert_allclose(got[i, :len(opts)], want, rtol=1e-5, atol=1e-5)
