"""`lcbm predict` and `lcbm score`: text (+ images) in, a continuation or its log-likelihood out.

`--checkpoint` is anything `checkpoint.load_for_inference` accepts: a training workdir, one step's
directory, a params-only checkpoint (`lcbm import-hf --out`), or an exported Hugging Face LLaVA
directory. Each `<image>` in the prompt takes the next `--image FILE`, preprocessed the way
transformers' CLIPImageProcessor does for LLaVA (`preprocess_image`), so an exported model gives the
same answer in both frameworks. Prompts get a leading BOS, as LLaVA's tokenizer adds one.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from lcbm_jax.errors import UserError


def preprocess_image(image, size: int, mean=None, std=None) -> np.ndarray:
  """PIL image -> float32[size, size, 3]: the training pipeline's CLIP preprocessing."""
  from data_pipeline import images
  return images.clip_preprocess(image, size, images.CLIP_MEAN if mean is None else mean,
                                images.CLIP_STD if std is None else std)


def load_images(paths: list[str], size: int, mean, std) -> np.ndarray | None:
  """--image files -> float32[1, M, size, size, 3] (None when there are none)."""
  from PIL import Image, UnidentifiedImageError
  out = []
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f"image {path} does not exist; pass an existing file to --image")
    try:
      with Image.open(path) as img:
        img.load()
        out.append(preprocess_image(img, size, mean, std))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise UserError(f"cannot read image {path} ({type(e).__name__}: {e}); pass a JPEG/PNG/GIF file") from None
  return np.stack(out)[None] if out else None


def _load(checkpoint: str):
  from lcbm_jax import checkpoint as ckpt
  cfg, params, tok = ckpt.load_for_inference(checkpoint)
  if tok is None:
    raise UserError(f"{checkpoint} holds no tokenizer (tokenizer.model); save or export it with one")
  if tok.image_id != cfg.image_token_id:
    raise UserError(f"{checkpoint}: the tokenizer's <image> id is {tok.image_id} but the model expects "
                    f"{cfg.image_token_id}; the tokenizer does not belong to this model")
  return cfg, params, tok


def _check_image_count(tok, ids: list[int], images: list[str]) -> None:
  n = sum(i == tok.image_id for i in ids)
  if n != len(images):
    raise UserError(f"the prompt has {n} <image> placeholder(s) but {len(images)} --image file(s) were given; "
                    "pass one --image per <image>, in order")


def _emit(args, result: dict, text: str) -> None:
  print(json.dumps(result, ensure_ascii=False) if args.json else text)
  sys.stdout.flush()


def cli_predict(args) -> int:
  import jax
  from data_pipeline.tokenizer import expand_image_tokens
  from lcbm_jax import inference
  if args.max_new_tokens < 1:
    raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
  cfg, params, tok = _load(args.checkpoint)
  ids = tok.encode(args.prompt, add_bos=True)
  _check_image_count(tok, ids, args.image)
  images = load_images(args.image, cfg.vision.image_size, cfg.image_mean, cfg.image_std)
  prompt = expand_image_tokens(ids, tok.image_id, cfg.num_image_tokens)
  new = inference.generate(cfg, params, [prompt], images, max_new_tokens=args.max_new_tokens, eos_id=tok.eos_id,
                           temperature=args.temperature, top_p=args.top_p, rng=jax.random.key(args.seed))[0]
  # A model vocabulary may be larger than the tokenizer's (padded to a multiple of 64); such ids
  # have no text and show as the unknown piece.
  text = tok.decode([i if i < tok.vocab_size else tok.unk_id for i in new])
  _emit(args, {"text": text, "token_ids": new, "prompt_tokens": len(prompt)}, text)
  return 0


def cli_score(args) -> int:
  from data_pipeline.tokenizer import expand_image_tokens
  from lcbm_jax import inference
  cfg, params, tok = _load(args.checkpoint)
  if not args.continuation:
    raise UserError("--continuation is empty; give the text whose log-likelihood to compute")
  # Encode prompt + continuation as one text (no spurious word-start piece at the join); a piece
  # that straddles the join belongs to the continuation.
  ids, is_cont = tok.encode_segments([args.prompt, args.continuation], [False, True])
  split = is_cont.index(True) if True in is_cont else len(ids)
  prompt, cont = [tok.bos_id] + ids[:split], ids[split:]
  _check_image_count(tok, ids, args.image)
  if tok.image_id in cont:
    raise UserError("the continuation contains <image>; put images in the prompt")
  images = load_images(args.image, cfg.vision.image_size, cfg.image_mean, cfg.image_std)
  prompt = expand_image_tokens(prompt, tok.image_id, cfg.num_image_tokens)
  scores = inference.score(cfg, params, [prompt], [cont], images)
  total, per_token = float(scores.total[0]), [float(x) for x in scores.per_token[0]]
  result = {"logprob": total, "num_tokens": len(cont), "mean_logprob": total / len(cont),
            "tokens": [tok.id_to_piece(i) for i in cont], "token_logprobs": per_token}
  _emit(args, result, f"{total:.4f}")
  return 0
