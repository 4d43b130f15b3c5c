"""Parity with transformers' LlavaForConditionalGeneration, both directions.

Import: a random HF LLaVA (CLIP + GQA Llama, untied) saved with save_pretrained -> our logits and
greedy tokens equal HF's on rows with 0, 1 and 3 images. Export: our random model -> HF loads it
without missing/unexpected weights, same logits and tokens; AutoTokenizer and AutoProcessor on the
exported directory give our ids and our pixels.
"""
import logging
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipeline.codec import Codec
from lcbm_jax import inference
from lcbm_jax.export import hf
from lcbm_jax.inference_images import preprocess_image
from lcbm_jax.model import lcbm
import hf_helpers as H

N_IMG = (H.IMAGE_SIZE // H.PATCH) ** 2
PROMPTS = ("USER: tell me a story ASSISTANT:", "USER: <image>\nhow many likes? ASSISTANT:",
           "<image> first, <image> second and <image> third: views?")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return H.tiny_tokenizer(str(tmp_path_factory.mktemp("tok")))


def _batch(tok):
  """Ids (images expanded), our images [B, 3, S, S, 3], HF pixel_values [n, 3, S, S], per row."""
  rows, images, flat = [], [], []
  for r, text in enumerate(PROMPTS):
    ids = Codec(tok, N_IMG).prompt_ids(text).tolist()
    n = text.count("<image>")
    pix = [preprocess_image(H.random_image(10 * r + k), H.IMAGE_SIZE) for k in range(n)]
    rows.append(ids)
    images.append(pix)
    flat.extend(pix)
  return rows, images, np.stack(flat)


def _our_logits(cfg, params, rows, images):
  b, length = len(rows), max(len(r) for r in rows)
  ids = np.zeros((b, length), np.int32)
  seg = np.zeros((b, length), np.int32)
  imgs = np.zeros((b, 3, H.IMAGE_SIZE, H.IMAGE_SIZE, 3), np.float32)
  for i, (r, pix) in enumerate(zip(rows, images)):
    ids[i, :len(r)] = r
    seg[i, :len(r)] = 1
    for m, p in enumerate(pix):
      imgs[i, m] = p
  pos = np.broadcast_to(np.arange(length, dtype=np.int32), (b, length))
  logits = lcbm.LCBM(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(imgs), jnp.asarray(seg),
                                jnp.asarray(pos))
  return np.asarray(logits), seg


def _hf_logits(model, rows, pixel_values):
  import torch
  b, length = len(rows), max(len(r) for r in rows)
  ids = torch.zeros((b, length), dtype=torch.long)
  mask = torch.zeros((b, length), dtype=torch.long)
  for i, r in enumerate(rows):
    ids[i, :len(r)] = torch.tensor(r)
    mask[i, :len(r)] = 1
  # HF takes the pixel values of all images of the batch, flattened, channels first.
  pv = torch.from_numpy(pixel_values.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    return model(input_ids=ids, pixel_values=pv, attention_mask=mask).logits.float().numpy()


def _hf_greedy(model, ids, pixels, n):
  import torch
  kwargs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones((1, len(ids)), dtype=torch.long)}
  if pixels:
    kwargs["pixel_values"] = torch.from_numpy(np.stack(pixels).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    out = model.generate(**kwargs, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None,
                         pad_token_id=0)
  return out[0, len(ids):].tolist()


def _our_greedy(cfg, params, rows, images, n):
  imgs = np.zeros((len(rows), 3, H.IMAGE_SIZE, H.IMAGE_SIZE, 3), np.float32)
  for i, pix in enumerate(images):
    for m, p in enumerate(pix):
      imgs[i, m] = p
  return inference.generate(cfg, params, rows, imgs, max_new_tokens=n, eos_id=None, temperature=0.0)


def _assert_parity(cfg, params, model, tok):
  rows, images, flat = _batch(tok)
  ours, seg = _our_logits(cfg, params, rows, images)
  theirs = _hf_logits(model, rows, flat)
  real = seg.astype(bool)
  np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4, rtol=0)
  n = 20
  ours_tokens = _our_greedy(cfg, params, rows, images, n)
  for r, (ids, pix) in enumerate(zip(rows, images)):
    assert ours_tokens[r] == _hf_greedy(model, ids, pix, n), f"row {r} ({len(pix)} images)"


def test_import_matches_transformers(tok, tmp_path):
  model = H.hf_llava(tok)
  model.save_pretrained(tmp_path / "hf")
  cfg, params, _ = hf.load_llava(str(tmp_path / "hf"))
  assert cfg.text.num_key_value_heads == 2 and not cfg.text.tie_word_embeddings
  assert cfg.param_dtype == "float32" and cfg.num_image_tokens == N_IMG
  _assert_parity(cfg, jax.tree.map(jnp.asarray, params), model, tok)


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_export_loads_in_transformers(tok, tmp_path):
  from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration
  H.torch_setup()
  cfg = H.our_config(tok)
  params = H.our_random_params(cfg)
  hf.save_llava(str(tmp_path / "out"), cfg, params, tok)

  records = _Records()
  logger = logging.getLogger("transformers")
  logger.addHandler(records)
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      model, info = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
  finally:
    logger.removeHandler(records)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  weight_words = ("missing", "unexpected", "newly initialized", "not used", "not initialized")
  noise = [m for m in records.messages + [str(w.message) for w in caught] if any(x in m.lower() for x in weight_words)]
  assert not noise, noise
  _assert_parity(cfg, jax.tree.map(jnp.asarray, params), model.eval(), tok)

  hf_tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
  for text in H.SAMPLE_TEXTS:
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text), text
  # Pinned known difference: a text that is exactly one user-defined piece gets no dummy prefix.
  assert hf_tok.encode("<image>", add_special_tokens=False) == tok.encode("<image>")[1:]

  proc = AutoProcessor.from_pretrained(str(tmp_path / "out"))
  text = "USER: <image>\nhow many likes? ASSISTANT:"
  # Landscape, portrait, square-and-small, grayscale and RGBA (alpha over white) inputs.
  for k, (size, mode) in enumerate([((70, 40), "RGB"), ((33, 90), "RGB"), ((20, 20), "L"), ((48, 64), "RGBA")]):
    img = H.random_image(k, size=size)
    img = img.convert(mode) if mode != "RGBA" else _with_alpha(img)
    got = proc(images=[img], text=text, return_tensors="np")
    np.testing.assert_allclose(got["pixel_values"][0].transpose(1, 2, 0), preprocess_image(img, H.IMAGE_SIZE),
                               atol=1e-6, rtol=0, err_msg=f"{size} {mode}")
  # The processor adds BOS (add_special_tokens) and expands <image> to our number of tokens.
  assert got["input_ids"][0].tolist() == Codec(tok, N_IMG).prompt_ids(text).tolist()


def _with_alpha(img):
  rgba = img.convert("RGBA")
  rgba.putalpha(H.random_image(9, size=img.size).convert("L"))
  return rgba
