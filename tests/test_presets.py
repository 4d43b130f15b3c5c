"""Presets: the LLaVA-1.5 shapes count exactly the parameters transformers builds; configs validate."""
import dataclasses

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets

# The published llava-hf/llava-1.5-{7b,13b}-hf configs (non-default fields only), written out here
# rather than derived from our presets so the comparison is independent.
_HF_VISION = dict(hidden_size=1024, image_size=336, intermediate_size=4096, num_attention_heads=16,
                  num_hidden_layers=24, patch_size=14, projection_dim=768, vocab_size=32000)
_HF_TEXT = {
    "llava-1.5-7b": dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                         max_position_embeddings=4096, tie_word_embeddings=False),
    "llava-1.5-13b": dict(vocab_size=32064, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                          num_attention_heads=40, num_key_value_heads=40, rms_norm_eps=1e-5,
                          max_position_embeddings=4096, tie_word_embeddings=False),
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0's published config, with the vocabulary hf.ClipLlama gives it:
    # 32,000 + <image> + <pad>, rounded up to a multiple of 64.
    "clip336-tinyllama-1.1b": dict(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                   num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5,
                                   max_position_embeddings=2048, tie_word_embeddings=False),
}


def _transformers_count(name: str) -> int:
  hc = LlavaConfig(vision_config=CLIPVisionConfig(**_HF_VISION), text_config=LlamaConfig(**_HF_TEXT[name]),
                   image_token_index=32000, vision_feature_layer=-2, projector_hidden_act="gelu")
  with torch.device("meta"):
    model = LlavaForConditionalGeneration(hc)
  return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("llava-1.5-7b", 7_063_427_072), ("llava-1.5-13b", 13_351_494_656),
                                           ("clip336-tinyllama-1.1b", 1_410_113_536)])
def test_llava_param_counts_equal_transformers(name, expected):
  ours = lcbm.param_count(presets.get(name))   # jax.eval_shape: nothing is allocated
  assert ours == expected
  assert ours == _transformers_count(name)


def test_llava_presets_match_hf_fields():
  for name, text in _HF_TEXT.items():
    cfg = presets.get(name)
    for key, value in text.items():
      assert getattr(cfg.text, key) == value, (name, key)
    for key in ("hidden_size", "image_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                "patch_size"):
      assert getattr(cfg.vision, key) == _HF_VISION[key], (name, key)
    assert cfg.image_token_id == 32000 and cfg.num_image_tokens == 576 and cfg.vision_feature_layer == -2


def test_bench_shapes():
  cfg = presets.get("bench")
  shapes = {k: v.shape for k, v in _flat(lcbm.abstract_params(cfg)).items()}
  assert cfg.num_image_tokens == 196
  assert shapes["vision/patch_embed/kernel"] == (16, 16, 3, 384)
  assert shapes["vision/position_embedding"] == (197, 384)
  assert shapes["vision/layers/attn/q/kernel"] == (6, 384, 6, 64)
  assert shapes["vision/layers/attn/o/bias"] == (6, 384)
  assert shapes["vision/layers/mlp/fc1/kernel"] == (6, 384, 1536)
  assert shapes["projector/linear_1/kernel"] == (384, 512)
  assert shapes["projector/linear_2/kernel"] == (512, 512)
  assert shapes["llm/embed_tokens/embedding"] == (8000, 512)
  assert shapes["llm/layers/attn/q/kernel"] == (8, 512, 8, 64)
  assert shapes["llm/layers/attn/k/kernel"] == (8, 512, 8, 64)
  assert shapes["llm/layers/attn/o/kernel"] == (8, 8, 64, 512)
  assert shapes["llm/layers/mlp/gate/kernel"] == (8, 512, 1376)
  assert shapes["llm/layers/mlp/down/kernel"] == (8, 1376, 512)
  assert shapes["llm/lm_head/kernel"] == (512, 8000)


def test_contract_layout_tiny():
  """The exact key set of docs/contracts.md §6 (HF interop writes its name table against it)."""
  keys = set(_flat(lcbm.abstract_params(presets.get("tiny"))))
  vision = {"vision/patch_embed/kernel", "vision/class_embedding", "vision/position_embedding"}
  vision |= {f"vision/{n}/{p}" for n in ("pre_layernorm", "post_layernorm") for p in ("scale", "bias")}
  vision |= {f"vision/layers/{n}/{p}" for n in ("layer_norm1", "layer_norm2") for p in ("scale", "bias")}
  vision |= {f"vision/layers/attn/{n}/{p}" for n in "qkvo" for p in ("kernel", "bias")}
  vision |= {f"vision/layers/mlp/{n}/{p}" for n in ("fc1", "fc2") for p in ("kernel", "bias")}
  projector = {f"projector/{n}/{p}" for n in ("linear_1", "linear_2") for p in ("kernel", "bias")}
  llm = {"llm/embed_tokens/embedding", "llm/norm/scale", "llm/lm_head/kernel"}
  llm |= {f"llm/layers/{n}/scale" for n in ("input_layernorm", "post_attention_layernorm")}
  llm |= {f"llm/layers/attn/{n}/kernel" for n in "qkvo"}
  llm |= {f"llm/layers/mlp/{n}/kernel" for n in ("gate", "up", "down")}
  assert keys == vision | projector | llm
  tied = dataclasses.replace(presets.get("tiny"), text=dataclasses.replace(presets.get("tiny").text,
                                                                           tie_word_embeddings=True))
  assert set(_flat(lcbm.abstract_params(tied))) == keys - {"llm/lm_head/kernel"}


def test_names_and_roundtrip():
  assert presets.names() == ("tiny", "demo", "bench", "clip336-tinyllama-1.1b", "llava-1.5-7b", "llava-1.5-13b")
  for name in presets.names():
    cfg = presets.get(name)
    assert presets.LCBMConfig.from_dict(cfg.to_dict()) == cfg
  # A config saved before text.attention_block existed loads with the default block.
  old = presets.get("demo").to_dict()
  del old["text"]["attention_block"]
  assert presets.LCBMConfig.from_dict(old) == presets.get("demo")
  assert presets.get("demo").text.attention_block == 128
  with pytest.raises(UserError, match="unknown model preset"):
    presets.get("llava-2")


@pytest.mark.parametrize("change,match", [
    (lambda c: dataclasses.replace(c, remat_policy="some"), "remat_policy"),
    (lambda c: dataclasses.replace(c, compute_dtype="int8"), "compute_dtype"),
    (lambda c: dataclasses.replace(c, image_token_id=512), "image_token_id"),
    (lambda c: dataclasses.replace(c, vision_feature_layer=-4), "vision_feature_layer"),
    (lambda c: dataclasses.replace(c.text, num_key_value_heads=3), "num_key_value_heads"),
    (lambda c: dataclasses.replace(c.text, attention_block=-1), "attention_block"),
    (lambda c: dataclasses.replace(c.text, attention_block=64.0), "attention_block"),
    (lambda c: presets.TextConfig(hidden_size=66, num_attention_heads=4, num_key_value_heads=4), "divisible"),
    (lambda c: dataclasses.replace(c.vision, image_size=30), "multiple of vision.patch_size"),
    (lambda c: dataclasses.replace(c.vision, hidden_act="gelu"), "quick_gelu"),
    (lambda c: dataclasses.replace(c.projector, hidden_act="relu"), "projector.hidden_act"),
])
def test_invalid_configs_raise_user_error(change, match):
  with pytest.raises(UserError, match=match):
    change(presets.get("tiny"))


def _flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out
