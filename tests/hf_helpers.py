"""Shared fixtures for the Hugging Face interop tests: a tiny SentencePiece model and tiny random
LLaVA models, built with transformers itself (the reference) or with our own init.

Weights are re-drawn with a larger spread than the default init (norm scales around 1, biases
non-zero) so that a swapped or transposed tensor changes the logits visibly and greedy decoding has
no near-ties.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

# Keep torch off the other cores: the suite runs on 2 CPUs shared with pytest-xdist.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TEXTS = [
    "USER: <image>\nHow many likes will this post get? ASSISTANT: About 1,234 likes (12% of views).",
    "The quick brown fox jumps over the lazy dog 17 times; replay values 45, 67, 89 per scene.",
    "Ünïcödé café naïve — 東京 😀 subreddit r/pics, upvotes 9876, comments: wow!",
    "Brand Acme posted a video with 3 scenes. Views: one million. Likes: high.",
] * 30
SAMPLE_TEXTS = (
    "Hello world",
    "<image>\nDescribe the image.",
    "USER: <image>\nhow many views? ASSISTANT: 12,345",
    "a <image> b<image>c",
    " leading space and  two spaces\tand a tab\n\nnewlines",
    "Ünïcödé café — 東京 😀 ﬁ ½",
    "digits 0123456789 and 99.5%",
    "",
)
IMAGE_SIZE, PATCH = 32, 8      # 16 image tokens per image


def tiny_tokenizer(out_dir: str | None = None):
  from data_pipeline.tokenizer import Tokenizer
  return Tokenizer.train(TEXTS, vocab_size=400, out_dir=out_dir)


def torch_setup():
  import torch
  torch.set_num_threads(1)
  torch.manual_seed(0)
  return torch


def hf_llava(tok, *, dtype: str = "float32", tied: bool = False, seed: int = 0):
  """A random transformers LlavaForConditionalGeneration (CLIP + GQA Llama), weights spread out."""
  torch = torch_setup()
  from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
  vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                        image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=16)
  tc = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=tok.vocab_size, tie_word_embeddings=tied,
                   rms_norm_eps=1e-5, max_position_embeddings=512, bos_token_id=tok.bos_id,
                   eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
  cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=tok.image_id,
                    image_seq_length=(IMAGE_SIZE // PATCH) ** 2, tie_word_embeddings=tied)
  model = LlavaForConditionalGeneration(cfg).eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.2 * noise)
      else:
        p.copy_(0.15 * noise)
  return model.to(getattr(torch, dtype))


def our_config(tok, *, tied: bool = False):
  """Our tiny preset sized for the tokenizer (GQA, untied embeddings by default)."""
  from lcbm_jax.model import presets
  cfg = presets.get("tiny")
  text = dataclasses.replace(cfg.text, vocab_size=tok.vocab_size, tie_word_embeddings=tied, rope_theta=5000.0)
  vision = dataclasses.replace(cfg.vision, image_size=IMAGE_SIZE, patch_size=PATCH, num_hidden_layers=3)
  # max_images 8 = what an import gets, so both parity tests share one compiled generate.
  return dataclasses.replace(cfg, text=text, vision=vision, image_token_id=tok.image_id, max_images=8)


def our_random_params(cfg, seed: int = 0) -> dict:
  """init_params with every leaf re-drawn (norm scales around 1), as numpy float32."""
  import jax
  from lcbm_jax.model import lcbm
  params = lcbm.init_params(cfg, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  def redraw(path, x):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    return 1.0 + 0.2 * noise if name.endswith("scale") else 0.15 * noise
  return jax.tree_util.tree_map_with_path(redraw, params)


def random_image(seed: int, size: tuple[int, int] = (45, 61)):
  """A PIL RGB image of a non-square size (exercises shortest-edge resize + center crop)."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")


def default_sentencepiece_dir(out_dir: str, texts=TEXTS, vocab_size: int = 100) -> str:
  """A SentencePiece model trained with default settings (unigram, nmt_nfkc, whitespace folding), as a
  user would have one, in `out_dir/tokenizer.model`."""
  import io

  import sentencepiece as spm
  os.makedirs(out_dir, exist_ok=True)
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size,
                                 minloglevel=2, num_threads=1)
  with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
    f.write(buf.getvalue())
  return out_dir


def save_hf_llava_dir(out_dir: str, sp_dir: str, *, dtype: str = "float32", seed: int = 0,
                      image_size: int = IMAGE_SIZE) -> str:
  """A LLaVA directory as transformers writes it: LlamaTokenizer converted from the SentencePiece model
  in `sp_dir` with `<image>` and `<pad>` added, a CLIP image processor, and a random tiny
  LlavaForConditionalGeneration sized for that tokenizer, all through `save_pretrained`."""
  torch = torch_setup()
  from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlamaTokenizer, LlavaConfig,
                            LlavaForConditionalGeneration, LlavaProcessor)
  tok = LlamaTokenizer.from_pretrained(sp_dir)
  tok.add_tokens(["<image>"], special_tokens=True)
  tok.add_special_tokens({"pad_token": "<pad>"})
  image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                       crop_size={"height": image_size, "width": image_size})
  processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH,
                             vision_feature_select_strategy="default", num_additional_image_tokens=1)
  image_id = tok.convert_tokens_to_ids("<image>")
  vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=image_size, patch_size=PATCH, projection_dim=16)
  tc = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=len(tok), rms_norm_eps=1e-5, max_position_embeddings=1024,
                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
  cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=image_id,
                    image_seq_length=(image_size // PATCH) ** 2)
  model = LlavaForConditionalGeneration(cfg).eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.2 * noise if "norm" in name and name.endswith("weight") else 0.15 * noise)
  model.to(getattr(torch, dtype)).save_pretrained(out_dir)
  processor.save_pretrained(out_dir)
  return out_dir


def _spread(model, seed: int):
  torch = torch_setup()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.2 * noise if "norm" in name and name.endswith("weight") else 0.15 * noise)
  return model


def save_clip_and_llama_dirs(root: str, sp_dir: str, *, seed: int = 0, image_size: int = IMAGE_SIZE):
  """Separate pretrained towers as transformers saves them: a CLIPVisionModel with its image
  processor, and a LlamaForCausalLM with the LlamaTokenizer converted from `sp_dir` (no `<image>`)."""
  torch_setup()
  from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM,
                            LlamaTokenizer)
  clip_dir, llama_dir = os.path.join(root, "clip"), os.path.join(root, "llama")
  vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=image_size, patch_size=PATCH, projection_dim=16)
  _spread(CLIPVisionModel(vc).eval(), seed).save_pretrained(clip_dir)
  CLIPImageProcessor(size={"shortest_edge": image_size},
                     crop_size={"height": image_size, "width": image_size}).save_pretrained(clip_dir)
  tok = LlamaTokenizer.from_pretrained(sp_dir)
  tc = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=len(tok), rms_norm_eps=1e-5, max_position_embeddings=1024,
                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
  _spread(LlamaForCausalLM(tc).eval(), seed + 1).save_pretrained(llama_dir)
  tok.save_pretrained(llama_dir)
  return clip_dir, llama_dir
