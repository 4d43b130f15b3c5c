"""`lcbm predict` and `lcbm score`: text (+ images) in, a continuation or its log-likelihood out.

  lcbm predict --checkpoint runs/demo/train --prompt "<image> ..." --image frame.png [--json]
  lcbm score --checkpoint runs/demo/hf --prompt "..." --continuation " 1,234 likes" [--json]

`--checkpoint` is anything `artifacts.load_for_inference` accepts: a training workdir, one step's
directory, a params-only checkpoint (`lcbm import-hf --out`), or an exported Hugging Face LLaVA
directory. Each `<image>` in the prompt takes the next `--image FILE`, preprocessed the way
transformers' CLIPImageProcessor does for LLaVA (`inference_images.load_model_images`), so an exported
model gives the same answer in both frameworks. Prompts get a leading BOS, as LLaVA's tokenizer adds one.
"""
from __future__ import annotations

import argparse
import json
import sys

import jax

from data_pipeline.codec import Codec
from lcbm_jax import artifacts, inference
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.inference_images import load_model_images


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--checkpoint", required=True, help="training workdir, one step's directory, or an HF directory")
  parser.add_argument("--prompt", required=True, help="text; one <image> per --image")
  parser.add_argument("--image", action="append", default=[], help="image file, once per <image> in the prompt")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  if command == "predict":
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_predict)
  else:
    parser.add_argument("--continuation", required=True)
    parser.set_defaults(run=_score)


def _load(checkpoint: str):
  cfg, params, tok = artifacts.load_for_inference(checkpoint)
  if tok is None:
    raise UserError(f"{checkpoint} holds no tokenizer (tokenizer.json or tokenizer.model); save or export it with one")
  hf.check_tokenizer(cfg, tok, checkpoint)
  return cfg, params, Codec(tok, cfg.num_image_tokens, artifacts.conversation(checkpoint))


def _check_image_count(codec: Codec, ids, images: list[str]) -> None:
  n = codec.num_images(ids)
  if n != len(images):
    raise UserError(f"the prompt has {n} <image> placeholder(s) but {len(images)} --image file(s) were given; "
                    "pass one --image per <image>, in order")


def _emit(args, result: dict, text: str) -> None:
  print(json.dumps(result, ensure_ascii=False) if args.json else text)
  sys.stdout.flush()


def _predict(args) -> int:
  if args.max_new_tokens < 1:
    raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
  cfg, params, codec = _load(args.checkpoint)
  prompt = codec.prompt_ids(args.prompt)
  _check_image_count(codec, prompt, args.image)
  images = load_model_images(args.image, cfg)
  new = inference.generate(cfg, params, [prompt], images, max_new_tokens=args.max_new_tokens,
                           eos_id=codec.tokenizer.eos_id, temperature=args.temperature, top_p=args.top_p,
                           rng=jax.random.key(args.seed))[0]
  # Ids past the tokenizer's vocabulary (a model's table padded to a multiple of 64) have no text.
  text = codec.decode(new, show_unknown=True)
  _emit(args, {"text": text, "token_ids": new, "prompt_tokens": len(prompt)}, text)
  return 0


def _score(args) -> int:
  cfg, params, codec = _load(args.checkpoint)
  tok = codec.tokenizer
  if not args.continuation:
    raise UserError("--continuation is empty; give the text whose log-likelihood to compute")
  # Prompt + continuation encoded as one text (no spurious word-start piece at the join).
  prompt, cont = codec.split(args.prompt, args.continuation)
  _check_image_count(codec, [*prompt, *cont], args.image)
  if tok.image_id in cont:
    raise UserError("the continuation contains <image>; put images in the prompt")
  if not len(cont):
    raise UserError(f"--continuation {args.continuation!r} has no token of its own; give it some text")
  cont = [int(i) for i in cont]
  images = load_model_images(args.image, cfg)
  scores = inference.score(cfg, params, [prompt], [cont], images)
  total, per_token = float(scores.total[0]), [float(x) for x in scores.per_token[0]]
  result = {"logprob": total, "num_tokens": len(cont), "mean_logprob": total / len(cont),
            "tokens": [tok.id_to_piece(i) for i in cont], "token_logprobs": per_token}
  _emit(args, result, f"{total:.4f}")
  return 0
