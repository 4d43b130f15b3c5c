"""`lcbm bench decode`: batched greedy decoding tokens/s against transformers' `generate`, from the same weights.

  lcbm bench decode                                  # bench preset, 8 prompts (one image + 32 text tokens), 64 new
  lcbm bench decode --preset demo --batch-size 4 --prompt-len 16 --new-tokens 32

Both sides decode the same prompts with the same weights (ours, exported by `export.hf.save_llava`
and loaded by `LlavaForConditionalGeneration.from_pretrained`, float32, SDPA attention): ours is
`inference.generate` (one jitted prefill + `lax.while_loop` over a KV cache), theirs
`model.generate(do_sample=False)` with its dynamic KV cache. Neither stops early (no EOS), so each
row yields exactly `new_tokens` ids, and before anything is timed the two sides' ids must be equal:
otherwise they are not the same computation and their speeds say nothing. Then the two alternate, so
load on a shared machine hits both; tokens/s = batch x new tokens / wall time, prefill included.
torch and transformers come from the test extra (`pip install -e '.[test]'`).
"""
from __future__ import annotations

import tempfile

import jax
import numpy as np

from lcbm_jax import inference, side_by_side
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import lcbm, presets




def prompts(cfg: presets.LCBMConfig, batch_size: int, prompt_len: int, seed: int = 0):
  """Rows of bos, one image's tokens and `prompt_len` random text ids; CLIP-normalised images [B, 1, S, S, 3]."""
  rs = np.random.RandomState(seed)
  text = rs.randint(5, cfg.text.vocab_size, size=(batch_size, prompt_len))
  text[text == cfg.image_token_id] = 5
  rows = [[1] + [cfg.image_token_id] * cfg.num_image_tokens + list(map(int, t)) for t in text]
  s = cfg.vision.image_size
  images = rs.randn(batch_size, 1, s, s, 3).astype(np.float32)
  return rows, images


def compare(preset: str, batch_size: int, prompt_len: int, new_tokens: int, repeats: int,
            threads: int | None = None, cfg=None) -> dict:
  torch, transformers, threads = side_by_side.torch_stack("lcbm bench decode", threads)
  cfg = cfg or presets.get(preset)
  if cfg.param_dtype != "float32" or cfg.compute_dtype != "float32":
    raise UserError(f"preset {preset} computes in {cfg.compute_dtype}; the comparison is float32 (the CPU's dtype)")
  params = jax.device_put(lcbm.init_params(cfg, jax.random.key(0)), jax.devices()[0])
  rows, images = prompts(cfg, batch_size, prompt_len)
  with tempfile.TemporaryDirectory() as d:
    hf.save_llava(d, cfg, jax.device_get(params))
    model = transformers.LlavaForConditionalGeneration.from_pretrained(d, dtype=torch.float32,
                                                                       attn_implementation="sdpa")
  model.eval()
  model.generation_config.eos_token_id = None   # no early stop: every row decodes new_tokens ids
  ids_t = torch.tensor(rows, dtype=torch.long)
  pixels_t = torch.tensor(images[:, 0].transpose(0, 3, 1, 2).copy())

  def ours():
    out = inference.generate(cfg, params, rows, images, max_new_tokens=new_tokens, eos_id=None)
    return np.asarray(out)

  def theirs():
    with torch.no_grad():
      out = model.generate(input_ids=ids_t, pixel_values=pixels_t, attention_mask=torch.ones_like(ids_t),
                           max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return out[:, ids_t.shape[1]:].numpy()

  ours_ids, theirs_ids = ours(), theirs()   # warm-up (our compile) and the check
  if ours_ids.shape != theirs_ids.shape or not np.array_equal(ours_ids, theirs_ids):
    diff = np.argwhere(ours_ids != theirs_ids) if ours_ids.shape == theirs_ids.shape else None
    where = f"first difference at (row, token) {tuple(diff[0])}" if diff is not None and len(diff) else "shapes differ"
    raise UserError(f"greedy ids differ between lcbm and transformers ({where}); the two models are not the same "
                    "computation, so their speeds are not comparable")
  ours_s, theirs_s = side_by_side.alternate((ours, theirs), repeats)
  tokens = batch_size * new_tokens
  return {"preset": preset, "batch_size": batch_size, "prompt_len": len(rows[0]), "new_tokens": new_tokens,
          "threads": threads, "ours_s": ours_s, "torch_s": theirs_s, "ours_tokens_per_s": tokens / ours_s,
          "torch_tokens_per_s": tokens / theirs_s, "ratio": theirs_s / ours_s, "ids_equal": True,
          "torch": torch.__version__, "transformers": transformers.__version__}


def format_result(r: dict) -> str:
  return (f"{r['preset']} greedy decode, {r['batch_size']} prompts of {r['prompt_len']} tokens (one image), "
          f"{r['new_tokens']} new tokens each: ids equal; lcbm {r['ours_s']:.2f} s ({r['ours_tokens_per_s']:.0f} "
          f"tokens/s) vs transformers {r['transformers']} generate on PyTorch {r['torch']} {r['torch_s']:.2f} s "
          f"({r['torch_tokens_per_s']:.0f} tokens/s): ratio {r['ratio']:.2f}x (threads: torch {r['threads']}, "
          "XLA 1 CPU device)")
