"""`lcbm export-hf` and `lcbm import-hf`: move a model between lcbm-jax checkpoints and Hugging Face.

  lcbm export-hf --checkpoint runs/demo/train --out runs/demo/hf [--dtype bfloat16]
  lcbm import-hf --hf-dir runs/demo/hf --out runs/imported      (or --vision-dir CLIP --llm-dir LLAMA)

export-hf: any checkpoint `artifacts.load_for_inference` accepts -> a LlavaForConditionalGeneration
directory (safetensors, config, tokenizer, processor). import-hf: a LLaVA directory, or a CLIP vision
directory plus a Llama directory (new projector), -> a params-only checkpoint (`checkpoint.save_params`)
that `--checkpoint` and training initialisation accept.
"""
from __future__ import annotations

import argparse
import os
import sys

import jax

from lcbm_jax import artifacts, checkpoint, hub
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
  if command == "export-hf":
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="default: the checkpoint's param dtype")
    parser.set_defaults(run=_export)
  else:
    parser.add_argument("--hf-dir", default=None,
                        help="LlavaForConditionalGeneration directory, or a Hugging Face Hub id such as "
                        "llava-hf/llava-1.5-7b-hf[@REVISION] (fetched into the Hub cache; offline: from it)")
    parser.add_argument("--vision-dir", default=None,
                        help="CLIP vision directory or Hub id, e.g. openai/clip-vit-large-patch14-336 "
                        "(with --llm-dir)")
    parser.add_argument("--llm-dir", default=None,
                        help="Llama directory or Hub id, e.g. lmsys/vicuna-7b-v1.5 (with --vision-dir); "
                        "a new projector is initialised")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="projector initialisation seed (CLIP + Llama import)")
    parser.set_defaults(run=_import)


def _check_new_dir(out: str) -> None:
  # Checked before loading anything: a wrong --out fails in a second, not after reading the weights.
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise UserError(f"{out} exists and is not an empty directory; choose a new --out")


def _export(args) -> int:
  _check_new_dir(args.out)
  cfg, params, tok = artifacts.load_for_inference(args.checkpoint)
  if tok is None:
    print(f"lcbm: warning: {args.checkpoint} has no tokenizer; writing weights and config only",
          file=sys.stderr)
  # The run's prompt format becomes the export's chat template (apply_chat_template = training ids).
  hf.save_llava(args.out, cfg, jax.device_get(params), tok, dtype=args.dtype,
                conversation=artifacts.conversation(args.checkpoint))
  n = sum(x.size for x in jax.tree.leaves(params))
  print(f"exported {n:,} parameters ({args.dtype or cfg.param_dtype}) to {args.out}")
  return 0


def _import(args) -> int:
  pair = args.vision_dir is not None or args.llm_dir is not None
  if (args.hf_dir is None) == (not pair) or (pair and (args.vision_dir is None or args.llm_dir is None)):
    raise UserError("pass either --hf-dir (a LLaVA directory) or both --vision-dir and --llm-dir")
  _check_new_dir(args.out)
  # Hub ids become their cached snapshot (downloaded if needed) only once --out is known to be good.
  if args.hf_dir is not None:
    cfg, params, tokenizer = hf.load_llava(hub.resolve(args.hf_dir, what="--hf-dir"))
  else:
    vision_dir = hub.resolve(args.vision_dir, what="--vision-dir")
    llm_dir = hub.resolve(args.llm_dir, what="--llm-dir")
    cfg, params, tokenizer = hf.load_clip_llama(vision_dir, llm_dir, seed=args.seed)
  if tokenizer is None:
    print("lcbm: warning: no tokenizer.json or tokenizer.model found; the checkpoint has no tokenizer "
          "(predict, score and training from it need one)", file=sys.stderr)
  out = checkpoint.save_params(args.out, cfg, params, tokenizer)
  print(f"imported {cfg.param_dtype} model (vocab {cfg.text.vocab_size}, image token {cfg.image_token_id}, "
        f"{cfg.num_image_tokens} tokens per image) to {out}")
  return 0
