"""`lcbm bench train --compare-torch`: the trainer's compiled step against transformers' LLaVA on PyTorch.

  lcbm bench train --compare-torch                    # bench preset, batch 4 x 512, vision trained and frozen

Both sides start from the same weights (ours, exported with `export.hf.save_llava` and loaded by
`LlavaForConditionalGeneration.from_pretrained`), see the same batch (one image and one sample per
row, every text token a target) and do the same work: forward, backward, gradient clipping and
AdamW, with the vision tower trained or frozen as LLaVA's recipes do. Before anything is timed, the
step-0 losses must agree to 1e-4; then the two steps alternate, so load on a shared machine hits both.
torch and transformers come from the test extra (`pip install -e '.[test]'`).
"""
from __future__ import annotations

import tempfile

import jax
import numpy as np

from lcbm_jax import sharding, side_by_side
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import presets
from lcbm_jax.training import bench, config as config_lib, train

LOSS_TOLERANCE = 1e-4



def _config(preset: str, batch_size: int, seq_len: int, steps: int, frozen: bool):
  c = config_lib.base_config()
  c.model.preset = preset
  c.data.batch_size, c.data.seq_len = batch_size, seq_len
  c.data.images_per_batch = batch_size   # one image per row, what the batch holds
  c.num_steps = 2 * steps + 10
  c.optim.warmup_steps = 1
  c.optim.freeze = ("^vision/",) if frozen else ()
  return c


def _torch_batch(torch, batch: dict) -> dict:
  """Our batch (one segment per row, one image each) as LlavaForConditionalGeneration's arguments;
  HF shifts labels itself, so label t is the token our target t - 1 names."""
  ids = batch["input_ids"]
  labels = np.full(ids.shape, -100, np.int64)
  labels[:, 1:] = np.where(batch["loss_mask"][:, :-1] > 0, batch["targets"][:, :-1], -100)
  pixels = batch["images"].reshape((-1,) + batch["images"].shape[2:])   # one group: row r's image is slot r
  return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels),
          "pixel_values": torch.tensor(pixels.transpose(0, 3, 1, 2).copy())}


def compare(preset: str, batch_size: int, seq_len: int, steps: int, frozen: bool, threads: int | None = None,
            model_cfg=None) -> dict:
  """One side-by-side measurement; returns both step times, tokens/s, the ratio and the step-0 losses."""
  torch, transformers, threads = side_by_side.torch_stack("--compare-torch", threads)
  config = _config(preset, batch_size, seq_len, steps, frozen)
  model_cfg = model_cfg or presets.get(preset)
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  compiled = train.compile_steps(config, model_cfg, mesh)
  rng = jax.random.key(0)
  state = compiled.init(rng)
  batch = bench.synthetic_batch(model_cfg, batch_size, seq_len, 0, 1, batch_size)
  device_batch = {k: jax.device_put(x, compiled.batch_sharding) for k, x in batch.items()}
  sums = jax.device_get(compiled.eval_step(state.params, device_batch, rng))
  ours_loss = float(sums["nll"] / sums["tokens"])

  with tempfile.TemporaryDirectory() as d:
    hf.save_llava(d, model_cfg, jax.device_get(state.params))
    model = transformers.LlavaForConditionalGeneration.from_pretrained(d, dtype=torch.float32,
                                                                       attn_implementation="sdpa")
  model.train()
  if frozen:
    model.model.vision_tower.requires_grad_(False)
  tb = _torch_batch(torch, batch)
  with torch.no_grad():
    theirs_loss = float(model(**tb).loss)
  if abs(ours_loss - theirs_loss) > LOSS_TOLERANCE:
    raise UserError(f"step-0 loss differs: lcbm {ours_loss:.6f}, transformers {theirs_loss:.6f}; the two models "
                    "are not the same computation, so their speeds are not comparable")
  o = config.optim
  opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr, betas=(o.b1, o.b2),
                          eps=o.eps, weight_decay=o.weight_decay)

  def torch_step():
    opt.zero_grad(set_to_none=True)
    loss = model(**tb).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm)
    opt.step()
    return loss

  def ours_step():
    nonlocal state
    state, m = compiled.train_step(state, device_batch, rng)
    jax.block_until_ready(m)

  ours_step()
  torch_step()   # warm-up: compilation, allocator, thread pools
  ours_s, torch_s = side_by_side.alternate((ours_step, torch_step), steps)
  tokens = batch_size * seq_len
  return {"preset": preset, "frozen": frozen, "threads": threads, "xla_devices": 1, "ours_loss": ours_loss,
          "torch_loss": theirs_loss, "ours_s": ours_s, "torch_s": torch_s, "ours_tokens_per_s": tokens / ours_s,
          "torch_tokens_per_s": tokens / torch_s, "ratio": torch_s / ours_s, "torch": torch.__version__,
          "transformers": transformers.__version__}


def format_result(r: dict) -> str:
  mode = "vision frozen" if r["frozen"] else "vision trained"
  return (f"{r['preset']} {mode}: step-0 loss lcbm {r['ours_loss']:.6f} = transformers {r['torch_loss']:.6f}; "
          f"lcbm {1e3 * r['ours_s']:.0f} ms/step ({r['ours_tokens_per_s']:.0f} tokens/s) vs PyTorch "
          f"{r['torch']} {1e3 * r['torch_s']:.0f} ms/step ({r['torch_tokens_per_s']:.0f} tokens/s): "
          f"ratio {r['ratio']:.2f}x (threads: torch {r['threads']}, XLA {r['xla_devices']} CPU device)")
