"""Inference on token ids: batched generation with a KV cache, and log-likelihood scoring.

Inputs are token ids whose `<image>` placeholders are ALREADY expanded to `cfg.num_image_tokens`
copies of `cfg.image_token_id` (the codec expands them), and CLIP-normalised images float[B, M, H, W, 3]
whose slot m is the m-th image of row b in token order (or None for text only).

  new_ids = generate(cfg, params, prompts, images, max_new_tokens=32, eos_id=tok.eos_id,
                     temperature=0.0, top_p=1.0, rng=None)       # list (one per row) of list[int]
  scores = score(cfg, params, prompt_ids, continuation_ids, images)
  scores.total      # float64[B]: sum of log p(continuation | prompt, images)
  scores.per_token  # list of float64[len(continuation_b)]
  option_logp = score_options(cfg, params, prompts, options, images, k)   # float64[B, k]

generate: prompts of different lengths are left-padded (padding has segment id 0, so it is never
attended; positions count from each prompt's first real token). One jitted call runs the prefill
and a `lax.while_loop` of decode steps over a cache of fixed size (padded prompt length +
max_new_tokens), so nothing is compiled per token. temperature 0 is greedy; otherwise logits are
divided by the temperature and sampling keeps the smallest set of tokens whose probability reaches
top_p. A row stops at its first `eos_id` (not included in the returned ids); the loop ends when
every row stopped or after max_new_tokens.

score: one full forward over prompt + continuation per row (zero-shot classification scores each
label as a continuation and takes the best).

score_options: the same log-likelihoods for up to k candidate continuations of each prompt, from
one prefill of the prompt whose KV cache every candidate then continues.

Token ids come from `data_pipeline.codec` (text in, text out); nothing here tokenizes.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm
from lcbm_jax.model.presets import LCBMConfig

_BUCKET = 16   # padded lengths are multiples of this, so nearby lengths share one compilation


class Scores(NamedTuple):
  total: np.ndarray              # float64[B]
  per_token: list[np.ndarray]    # per row, float64[len(continuation)]


def _round_up(n: int) -> int:
  return max(_BUCKET, -(-n // _BUCKET) * _BUCKET)


def _check_rows(cfg: LCBMConfig, rows: Sequence[Sequence[int]], images, what: str) -> list[list[int]]:
  rows = [[int(t) for t in r] for r in rows]
  if not rows:
    raise UserError(f"{what}: no rows given")
  v = cfg.text.vocab_size
  for i, r in enumerate(rows):
    if not r:
      raise UserError(f"{what}: row {i} is empty; a prompt needs at least one token (e.g. BOS)")
    bad = [t for t in r if not 0 <= t < v]
    if bad:
      raise UserError(f"{what}: row {i} holds token ids {bad[:3]} outside the vocabulary [0, {v})")
  slots = 0 if images is None else images.shape[1]
  if images is not None:
    want = (len(rows), slots, cfg.vision.image_size, cfg.vision.image_size, 3)
    if images.ndim != 5 or images.shape[0] != len(rows) or images.shape[2:] != want[2:]:
      raise UserError(f"{what}: images have shape {tuple(images.shape)}, expected [B, M, H, W, 3] = "
                      f"[{len(rows)}, M, {want[2]}, {want[3]}, 3]")
  for i, r in enumerate(rows):
    n = sum(t == cfg.image_token_id for t in r)
    if n % cfg.num_image_tokens or n > slots * cfg.num_image_tokens:
      raise UserError(f"{what}: row {i} has {n} image tokens; it needs num_image_tokens="
                      f"{cfg.num_image_tokens} per image and at most one image per slot "
                      f"({slots} image slot(s) given); expand each <image> once and pass its image")
  return rows


def _images(images):
  return None if images is None else jnp.asarray(images, jnp.float32)


def _top_p_sample(logits_BV, rng, temperature, top_p):
  scaled_BV = logits_BV / jnp.maximum(temperature, 1e-6)
  # Top-p: keep the most likely tokens until their mass reaches top_p (the first always stays).
  sorted_BV = jnp.sort(scaled_BV, axis=-1)[:, ::-1]
  probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
  mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
  keep_BV = mass_before_BV < top_p
  cutoff_B1 = jnp.min(jnp.where(keep_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
  scaled_BV = jnp.where(scaled_BV >= cutoff_B1, scaled_BV, -jnp.inf)
  return jax.random.categorical(rng, scaled_BV, axis=-1).astype(jnp.int32)


def _sample(logits_BV, rng, temperature, top_p):
  # A cond, not a select of both: greedy decoding then never pays the vocabulary sort of top-p
  # (at batch 8 and 8,000 tokens, a third of a CPU decode step).
  return jax.lax.cond(temperature > 0, _top_p_sample,
                      lambda l, *_: jnp.argmax(l, axis=-1).astype(jnp.int32), logits_BV, rng, temperature, top_p)


@functools.lru_cache(maxsize=16)
def _generate_fn(cfg: LCBMConfig, max_new_tokens: int):
  model = lcbm.LCBM(cfg)

  def run(params, ids_BP, seg_BP, pos_BP, images, eos_id, temperature, top_p, rng):
    b, p = ids_BP.shape
    cache = lcbm.init_cache(cfg, b, p + max_new_tokens)
    logits_B1V, cache = model.apply({"params": params}, ids_BP, images, seg_BP, pos_BP,
                                    cache=cache, cache_index=0, last_logits=True)
    rng, sub = jax.random.split(rng)
    tok_B = _sample(logits_B1V[:, 0], sub, temperature, top_p)
    out_BN = jnp.full((b, max_new_tokens), -1, jnp.int32)
    state = (0, tok_B, pos_BP[:, -1] + 1, jnp.zeros((b,), bool), out_BN, cache, rng)
    per_layer = lcbm.unstack_layers(params)   # sliced once, not at every token

    def cond(s):
      i, _, _, done_B, *_ = s
      return (i < max_new_tokens) & ~jnp.all(done_B)

    def body(s):
      i, tok_B, pos_B, done_B, out_BN, cache, rng = s
      out_BN = out_BN.at[:, i].set(jnp.where(done_B, -1, tok_B))
      done_B = done_B | (tok_B == eos_id)
      logits_B1V, cache = model.apply({"params": per_layer}, tok_B[:, None], None, jnp.ones((b, 1), jnp.int32),
                                      pos_B[:, None], cache=cache, cache_index=p + i)
      rng, sub = jax.random.split(rng)
      tok_B = _sample(logits_B1V[:, 0], sub, temperature, top_p)
      return i + 1, tok_B, pos_B + 1, done_B, out_BN, cache, rng

    return jax.lax.while_loop(cond, body, state)[4]

  return jax.jit(run)


def generate(cfg: LCBMConfig, params, prompts: Sequence[Sequence[int]], images=None, *, max_new_tokens: int,
             eos_id: int | None, temperature: float = 0.0, top_p: float = 1.0, rng=None) -> list[list[int]]:
  """New token ids per row (EOS excluded). prompts: token-id rows; images: float[B, M, H, W, 3] or None."""
  rows = _check_rows(cfg, prompts, images, "generate")
  if max_new_tokens < 1:
    raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0 or not 0 < top_p <= 1:
    raise UserError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
  if temperature > 0 and rng is None:
    raise UserError("sampling with temperature > 0 needs an rng (e.g. jax.random.key(seed))")
  ids, seg, pos = _left_padded(rows, _round_up(max(len(r) for r in rows)))
  out = _generate_fn(cfg, int(max_new_tokens))(
      params, ids, seg, pos, _images(images), jnp.int32(-1 if eos_id is None else eos_id),
      jnp.float32(temperature), jnp.float32(top_p), jax.random.key(0) if rng is None else rng)
  result = []
  for row in np.asarray(out):
    new = []
    for t in row:
      if t < 0 or (eos_id is not None and t == eos_id):
        break
      new.append(int(t))
    result.append(new)
  return result


@functools.lru_cache(maxsize=16)
def _forward_fn(cfg: LCBMConfig, log_probs_of_next: bool):
  model = lcbm.LCBM(cfg)

  def run(params, ids_BL, images, seg_BL, pos_BL):
    logits_BLV = model.apply({"params": params}, ids_BL, images, seg_BL, pos_BL)
    if not log_probs_of_next:
      return logits_BLV
    logp_BLV = jax.nn.log_softmax(logits_BLV[:, :-1], axis=-1)
    return jnp.take_along_axis(logp_BLV, ids_BL[:, 1:, None], axis=-1)[..., 0]

  return jax.jit(run)


def _left_padded(rows: Sequence[Sequence[int]], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ids, segment ids and positions of prompts left-padded to `length`: every row ends at the same
  column, so a decode or a continuation follows all of them at once. Padding has segment id 0 (never
  attended); positions count from each row's first real token."""
  ids, seg, pos = (np.zeros((len(rows), length), np.int32) for _ in range(3))
  for i, r in enumerate(rows):
    ids[i, length - len(r):] = r
    seg[i, length - len(r):] = 1
    pos[i, length - len(r):] = np.arange(len(r))
  return ids, seg, pos


def _padded(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ids, segment ids and positions of rows right-padded to a bucketed length (few compilations)."""
  length = _round_up(max(len(r) for r in rows))
  ids = np.zeros((len(rows), length), np.int32)
  seg = np.zeros((len(rows), length), np.int32)
  for i, r in enumerate(rows):
    ids[i, :len(r)] = r
    seg[i, :len(r)] = 1
  return ids, seg, np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape)


def logits(cfg: LCBMConfig, params, rows: Sequence[Sequence[int]], images=None) -> np.ndarray:
  """float32[B, L, V] next-token logits of whole rows (one forward, no cache); row i is valid up to
  len(rows[i]). For probes that need whole distributions; `score` keeps them on the device."""
  ids, seg, pos = _padded(_check_rows(cfg, rows, images, "logits"))
  return np.asarray(_forward_fn(cfg, False)(params, ids, _images(images), seg, pos))


def score(cfg: LCBMConfig, params, prompt_ids: Sequence[Sequence[int]],
          continuation_ids: Sequence[Sequence[int]], images=None) -> Scores:
  """log p(continuation | prompt, images) per row, in total and per continuation token."""
  prompts = _check_rows(cfg, prompt_ids, images, "score")
  conts = [[int(t) for t in c] for c in continuation_ids]
  if len(conts) != len(prompts):
    raise UserError(f"score: {len(prompts)} prompts but {len(conts)} continuations")
  rows = _check_rows(cfg, [p + c for p, c in zip(prompts, conts)], images, "score")
  ids, seg, pos = _padded(rows)
  logp = np.asarray(_forward_fn(cfg, True)(params, ids, _images(images), seg, pos), np.float64)
  # logp[:, j] is log p(ids[:, j + 1]); continuation token k sits at len(prompt) + k.
  per_token = [logp[i, len(p) - 1:len(p) - 1 + len(c)] for i, (p, c) in enumerate(zip(prompts, conts))]
  return Scores(np.array([x.sum() for x in per_token]), per_token)


# ---------------------------------------------------------------------------------------------
# Prefix-shared option scoring: one prompt prefill, then every option continues its cache.


@functools.lru_cache(maxsize=8)
def _option_fn(cfg: LCBMConfig):
  model = lcbm.LCBM(cfg)

  def run(params, ids_BP, seg_BP, pos_BP, images, cont_NC, seg_NC, pos_NC):
    (b, p), (n, c) = ids_BP.shape, cont_NC.shape
    k = n // b
    cache = lcbm.init_cache(cfg, b, p + c)
    logits_B1V, cache = model.apply({"params": params}, ids_BP, images, seg_BP, pos_BP, cache=cache, cache_index=0,
                                    last_logits=True)
    # The K options of a prompt all continue it: repeat each prompt's cache over its K option rows.
    cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cache)
    logits_NCV, _ = model.apply({"params": params}, cont_NC, None, seg_NC, pos_NC, cache=cache, cache_index=p)
    first_NV = jnp.repeat(jax.nn.log_softmax(logits_B1V[:, 0]), k, axis=0)
    # log p of option token j comes from the logits after token j-1 (the prompt's last for j = 0).
    logp_NCV = jnp.concatenate([first_NV[:, None], jax.nn.log_softmax(logits_NCV[:, :-1])], axis=1)
    tok_NC = jnp.take_along_axis(logp_NCV, cont_NC[:, :, None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(seg_NC > 0, tok_NC, 0.0), axis=1).reshape(b, k)

  return jax.jit(run)


def _bucket(n: int, size: int) -> int:
  return max(size, -(-n // size) * size)


def score_options(cfg: LCBMConfig, params, prompts: Sequence[Sequence[int]],
                  options: Sequence[Sequence[Sequence[int]]], images, k: int) -> np.ndarray:
  """log p(option | prompt, images) from one prefill per prompt: float64[B, k] (unused slots 0).

  Equals `score` of each (prompt, option) pair (tested) at a fraction of the cost: 25 or 100
  candidates cost one prompt forward plus a few tokens each.
  prompts: B token-id rows (image tokens expanded); options: per prompt at most k non-empty rows;
  images: float[B, M, H, W, 3] or None.
  """
  prompts = _check_rows(cfg, prompts, images, "score_options")
  if any(len(o) == 0 for opts in options for o in opts) or any(len(opts) > k for opts in options):
    raise ValueError("score_options: every option needs a token, and at most k options per prompt")
  b = len(prompts)
  # Coarse length buckets: one compilation serves many prompt lengths.
  p = _bucket(max(len(r) for r in prompts), 64)
  c = _bucket(max((len(o) for opts in options for o in opts), default=1), 4)
  ids, seg, pos = _left_padded(prompts, p)
  cont, cseg, cpos = (np.zeros((b * k, c), np.int32) for _ in range(3))
  for i, r in enumerate(prompts):
    cpos[i * k:(i + 1) * k] = len(r) + np.arange(c)
    for j, o in enumerate(options[i]):
      cont[i * k + j, :len(o)] = o
      cseg[i * k + j, :len(o)] = 1
  return np.asarray(_option_fn(cfg)(params, ids, seg, pos, _images(images), cont, cseg, cpos), np.float64)
