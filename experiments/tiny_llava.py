"""A tiny random LLaVA directory, written by transformers itself: the stand-in for
`llava-hf/llava-1.5-7b-hf` in the README's CPU miniature of the fine-tuning workflow.

  python experiments/tiny_llava.py --data runs/ft/data --out runs/ft/tiny_llava

Its tokenizer is a SentencePiece model trained on the built corpus's text (so the corpus tokenizes
well), converted by transformers' `LlamaTokenizer` and saved with a CLIP image processor through
`LlavaProcessor.save_pretrained`; the model is a `LlavaForConditionalGeneration` of the `tiny`
preset's size with random weights, saved with `save_pretrained` (safetensors). Needs the `hf` extra
(`pip install -e '.[hf]'`: transformers and the CPU build of torch).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import pipeline, vocab  # noqa: E402
from lcbm_jax.cli.errors import exit_code  # noqa: E402
from lcbm_jax.errors import UserError  # noqa: E402

TASKS = ("blift", "instruction", "behavior_simulation", "likes_high_low")


def write(data_dir: str, out: str, *, image_size: int = 32, vocab_size: int = 1024, seed: int = 0) -> str:
  try:   # the hf extra, only for this script: a clear error, not an ImportError at startup
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlamaTokenizer, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
  except ImportError:
    raise UserError("experiments/tiny_llava.py needs transformers and torch: pip install -e '.[hf]'") from None
  if os.path.exists(out) and os.listdir(out):
    raise UserError(f"{out} exists and is not empty; choose a new --out")
  torch.manual_seed(seed)
  with tempfile.TemporaryDirectory() as tmp:
    vocab.train_corpus_tokenizer(pipeline.Corpus(data_dir, "train"), TASKS, vocab_size=vocab_size, max_images=4,
                                 seed=seed, out_dir=tmp)
    tok = LlamaTokenizer.from_pretrained(tmp)
  tok.add_tokens(["<image>"], special_tokens=True)
  if tok.pad_token is None:
    tok.add_special_tokens({"pad_token": "<pad>"})
  processor = LlavaProcessor(
      image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size}),
      tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)
  config = LlavaConfig(
      vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=image_size, patch_size=8),
      text_config=LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, vocab_size=len(tok), rms_norm_eps=1e-5,
                              max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
      image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=(image_size // 8) ** 2)
  LlavaForConditionalGeneration(config).save_pretrained(out)
  processor.save_pretrained(out)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data", required=True, help="a built data dir (`lcbm data build --out`): the tokenizer's text")
  p.add_argument("--out", required=True)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  print(f"wrote a tiny LLaVA to {write(args.data, args.out, seed=args.seed)}")
  return 0


if __name__ == "__main__":
  sys.exit(exit_code(main, prog="tiny_llava"))
