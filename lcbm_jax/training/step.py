"""Pure train and eval steps: masked next-token cross-entropy in float32, per task.

`make_train_step` returns `train_step(state, batch, rng) -> (state, metrics)`, free of Python side
effects so `train.py` can jit it with explicit shardings and donate the state. The step key is
`fold_in(rng, state.step)`, so a resumed run draws the same numbers as an uninterrupted one.

A step whose loss or gradient is not finite returns the previous parameters and optimizer state
bit-for-bit (`jnp.where` on the finiteness flag) and bumps the non-finite counters instead.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lcbm_jax.training.state import TrainState

# apply_fn(params, batch, rng) -> logits float32[B, L, V]
ApplyFn = Callable[[Any, dict, jax.Array], jax.Array]


def loss_sums(logits_BLV: jax.Array, batch: dict, num_tasks: int) -> dict:
  """Sums (not means) of the masked token NLL, overall and per task, so micro-batches add up."""
  logits_BLV = logits_BLV.astype(jnp.float32)
  target_logit_BL = jnp.take_along_axis(logits_BLV, batch["targets"][..., None], axis=-1)[..., 0]
  nll_BL = jax.nn.logsumexp(logits_BLV, axis=-1) - target_logit_BL
  mask_BL = batch["loss_mask"].astype(jnp.float32)
  weighted_BL = nll_BL * mask_BL
  # task_ids is -1 on padding; one_hot maps it to all zeros.
  task_BLT = jax.nn.one_hot(batch["task_ids"], num_tasks, dtype=jnp.float32)
  return {
      "nll": weighted_BL.sum(),
      "tokens": mask_BL.sum(),
      "task_nll": jnp.einsum("bl,blt->t", weighted_BL, task_BLT),
      "task_tokens": jnp.einsum("bl,blt->t", mask_BL, task_BLT),
  }


def _split_micro(batch: dict, accum: int) -> dict:
  """[B, ...] -> [accum, B/accum, ...] by image group: micro-batch i takes groups i, i+accum, ...
  (`images[g]` and group g's block of consecutive rows; data_pipeline/batch.py).

  Interleaving keeps every device's groups spread over all micro-batches, so a batch sharded over
  devices stays balanced in each micro-step, and each micro-batch's rows still read only the images
  of their own group.
  """
  groups = batch["images"].shape[0]
  if groups % accum:
    raise ValueError(f"{groups} image groups do not split into {accum} micro-batches (train.image_groups)")

  def split(x):
    g = x.reshape(groups // accum, accum, x.shape[0] // groups, *x.shape[1:]).swapaxes(0, 1)
    return g.reshape(accum, x.shape[0] // accum, *x.shape[1:])
  return jax.tree.map(split, batch)


def make_train_step(apply_fn: ApplyFn, tx: optax.GradientTransformation, trainable: Any,
                    schedule: optax.Schedule, num_tasks: int, grad_accum: int = 1, num_image_tokens: int = 1):
  """Builds the pure step. `trainable` is the bool pytree from `optim.trainable_mask`."""

  def loss_fn(params, micro_batch, rng):
    # Frozen parameters are constants to autodiff: no backward pass through a frozen vision tower.
    params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
    sums = loss_sums(apply_fn(params, micro_batch, rng), micro_batch, num_tasks)
    return sums["nll"], sums

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    step_rng = jax.random.fold_in(rng, state.step)

    def micro_step(grads_acc, xs):
      i, micro_batch = xs
      grads, sums = jax.grad(loss_fn, has_aux=True)(state.params, micro_batch,
                                                    jax.random.fold_in(step_rng, i))
      return jax.tree.map(jnp.add, grads_acc, grads), sums

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    grad_sums, sums = jax.lax.scan(micro_step, zeros,
                                   (jnp.arange(grad_accum), _split_micro(batch, grad_accum)))
    sums = jax.tree.map(lambda x: x.sum(axis=0), sums)
    tokens = jnp.maximum(sums["tokens"], 1.0)
    grads = jax.tree.map(lambda g: g / tokens, grad_sums)
    loss = sums["nll"] / tokens

    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # Casting back to the old dtype keeps the state's types fixed across steps: with bfloat16
    # params some gradients (and so Adam moments) come back float32, and the compiled step
    # would then refuse its own output.
    keep = lambda new, old: jnp.where(finite, new.astype(old.dtype), old)
    nonfinite_in_row = jnp.where(finite, 0, state.nonfinite_in_row + 1)
    new_state = state.replace(
        step=state.step + 1,
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, new_opt_state, state.opt_state),
        nonfinite_in_row=nonfinite_in_row,
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
    metrics = {
        "loss": loss,
        "task_loss": sums["task_nll"] / jnp.maximum(sums["task_tokens"], 1.0),
        "task_tokens": sums["task_tokens"],
        "target_tokens": sums["tokens"],
        "tokens": (batch["segment_ids"] > 0).sum(),
        "images": (batch["image_index"] >= 0).sum() // num_image_tokens,   # read by some row (MFU)
        "grad_norm": grad_norm,
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(new_state.params),
        "lr": schedule(state.step),
        "finite": finite,
        "nonfinite_in_row": nonfinite_in_row,
        "nonfinite_total": new_state.nonfinite_total,
    }
    return new_state, metrics

  return train_step


def make_eval_step(apply_fn: ApplyFn, num_tasks: int):
  """`eval_step(params, batch, rng) -> sums`; the caller adds sums over batches, then divides."""

  def eval_step(params, batch, rng):
    return loss_sums(apply_fn(params, batch, rng), batch, num_tasks)

  return eval_step
