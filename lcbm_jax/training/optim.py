"""Optimizer: AdamW with warm-up + cosine, global-norm clipping, a weight-decay mask and freeze rules.

Both masks are regexes over parameter paths such as `llm/layers/attn/q/kernel`, so the LLaVA stages
(projector only, then projector + LLM) are configs, not code. Frozen parameters get
`optax.set_to_zero` through `optax.multi_transform`: they carry no Adam moments and never move.
Clipping sits inside the trainable branch, so the clip norm is the norm of what is actually trained.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import optax

from lcbm_jax.errors import UserError

TRAIN, FROZEN = "train", "frozen"


def path_str(path) -> str:
  """`llm/layers/attn/q/kernel` for a jax key path of the params dict."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _matches(patterns: Sequence[str], path: str) -> bool:
  return any(re.search(p, path) for p in patterns)


def _check_patterns(patterns: Sequence[str], params, what: str) -> None:
  """A freeze or decay rule that matches nothing is almost always a typo: say so."""
  paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for pat in patterns:
    try:
      rx = re.compile(pat)
    except re.error as e:
      raise UserError(f"{what} pattern {pat!r} is not a valid regex ({e}); fix it in the config") from e
    if not any(rx.search(p) for p in paths):
      raise UserError(f"{what} pattern {pat!r} matches no parameter; parameter paths look like "
                      f"{paths[:3]}; fix the pattern in the config")


def trainable_mask(params, freeze: Sequence[str]):
  """Pytree of bools like `params`: False where a freeze regex matches the path."""
  _check_patterns(freeze, params, "optim.freeze")
  return jax.tree_util.tree_map_with_path(lambda p, _: not _matches(freeze, path_str(p)), params)


def decay_mask(params, no_decay: Sequence[str]):
  """Pytree of bools: True where weight decay applies (no `no_decay` regex matches).

  Also called by optax on the trainable sub-tree (frozen leaves are empty `MaskedNode`s there).
  """
  return jax.tree_util.tree_map_with_path(lambda p, _: not _matches(no_decay, path_str(p)), params)


def make_schedule(optim_cfg, num_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `lr`, then cosine down to `lr * end_lr_ratio` at `num_steps`."""
  warmup = int(optim_cfg.warmup_steps)
  if warmup >= num_steps:
    raise UserError(f"optim.warmup_steps ({warmup}) must be smaller than num_steps ({num_steps})")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_cfg.lr, warmup_steps=warmup,
      decay_steps=num_steps, end_value=optim_cfg.lr * optim_cfg.end_lr_ratio)


def make_optimizer(optim_cfg, params: Any, num_steps: int) -> optax.GradientTransformation:
  """The full update rule for `params` (a pytree or its abstract shapes)."""
  trainable = trainable_mask(params, tuple(optim_cfg.freeze))
  no_decay = tuple(optim_cfg.no_decay)
  _check_patterns(no_decay, params, "optim.no_decay")
  if not any(jax.tree.leaves(trainable)):
    raise UserError("optim.freeze freezes every parameter; nothing would train")
  adamw = optax.adamw(make_schedule(optim_cfg, num_steps), b1=optim_cfg.b1, b2=optim_cfg.b2,
                      eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay,
                      mask=lambda p: decay_mask(p, no_decay))
  train_tx = optax.chain(optax.clip_by_global_norm(optim_cfg.clip_norm), adamw)
  labels = jax.tree.map(lambda t: TRAIN if t else FROZEN, trainable)
  return optax.multi_transform({TRAIN: train_tx, FROZEN: optax.set_to_zero()}, labels)
