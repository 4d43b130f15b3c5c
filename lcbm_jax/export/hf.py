"""Hugging Face LLaVA <-> lcbm-jax: parameters, config, tokenizer and image-processor files.

Reads and writes safetensors with numpy only (no torch). `PARAM_TABLE` is the one name table:
HF tensor name <-> our parameter path, with the transform between the two layouts. HF names are
written the way `LlavaForConditionalGeneration.save_pretrained` writes them in transformers 5
(`vision_tower.*`, `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.weight`);
the other spellings found in the wild (`model.language_model.*`, `vision_tower.vision_model.*`,
`lm_head.weight`, plain CLIP / Llama checkpoints) are mapped onto them on import.

  cfg, params, tokenizer_file = load_llava(hf_dir)
  cfg, params, tokenizer_file = load_clip_llama(vision_dir, llm_dir, seed=0)
  save_llava(out_dir, cfg, params, tokenizer_file, dtype=None)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import jax
import ml_dtypes
import numpy as np
import safetensors.numpy

from data_pipeline import tokenizer as tokenizer_lib
from lcbm_jax.errors import UserError
from lcbm_jax.model import lcbm, presets

# Transforms between HF layout (torch Linear weight [out, in]) and ours (kernel [in, ..., out]).
#   same:       identical layout
#   linear:     [out, in] <-> [in, out]
#   heads_in:   q/k/v  [H*hd, D] <-> [D, H, hd]
#   heads_out:  o      [D, H*hd] <-> [H, hd, D]
#   heads_bias: [H*hd] <-> [H, hd]
#   patch:      conv [Dv, 3, p, p] <-> [p, p, 3, Dv]
_TO_OURS = {
    "same": lambda w, shape: w,
    "linear": lambda w, shape: w.T,
    "heads_in": lambda w, shape: w.T.reshape(shape),
    "heads_out": lambda w, shape: w.T.reshape(shape),
    "heads_bias": lambda w, shape: w.reshape(shape),
    "patch": lambda w, shape: w.transpose(2, 3, 1, 0),
}
_TO_HF = {
    "same": lambda w: w,
    "linear": lambda w: w.T,
    "heads_in": lambda w: w.reshape(w.shape[0], -1).T,
    "heads_out": lambda w: w.reshape(-1, w.shape[-1]).T,
    "heads_bias": lambda w: w.reshape(-1),
    "patch": lambda w: w.transpose(3, 2, 0, 1),
}

_V = "vision_tower."
_VL = "vision_tower.encoder.layers.{i}."
_T = "language_model.model."
_TL = "language_model.model.layers.{i}."

# The one name table: (HF name, our path, transform). `{i}` marks a per-layer tensor; ours stacks the
# layers on a leading axis (nn.scan), so HF layer i is our [i].
PARAM_TABLE: tuple[tuple[str, str, str], ...] = (
    (_V + "embeddings.patch_embedding.weight", "vision/patch_embed/kernel", "patch"),
    (_V + "embeddings.class_embedding", "vision/class_embedding", "same"),
    (_V + "embeddings.position_embedding.weight", "vision/position_embedding", "same"),
    (_V + "pre_layrnorm.weight", "vision/pre_layernorm/scale", "same"),
    (_V + "pre_layrnorm.bias", "vision/pre_layernorm/bias", "same"),
    (_V + "post_layernorm.weight", "vision/post_layernorm/scale", "same"),
    (_V + "post_layernorm.bias", "vision/post_layernorm/bias", "same"),
    (_VL + "layer_norm1.weight", "vision/layers/layer_norm1/scale", "same"),
    (_VL + "layer_norm1.bias", "vision/layers/layer_norm1/bias", "same"),
    (_VL + "layer_norm2.weight", "vision/layers/layer_norm2/scale", "same"),
    (_VL + "layer_norm2.bias", "vision/layers/layer_norm2/bias", "same"),
    (_VL + "self_attn.q_proj.weight", "vision/layers/attn/q/kernel", "heads_in"),
    (_VL + "self_attn.q_proj.bias", "vision/layers/attn/q/bias", "heads_bias"),
    (_VL + "self_attn.k_proj.weight", "vision/layers/attn/k/kernel", "heads_in"),
    (_VL + "self_attn.k_proj.bias", "vision/layers/attn/k/bias", "heads_bias"),
    (_VL + "self_attn.v_proj.weight", "vision/layers/attn/v/kernel", "heads_in"),
    (_VL + "self_attn.v_proj.bias", "vision/layers/attn/v/bias", "heads_bias"),
    (_VL + "self_attn.out_proj.weight", "vision/layers/attn/o/kernel", "heads_out"),
    (_VL + "self_attn.out_proj.bias", "vision/layers/attn/o/bias", "same"),
    (_VL + "mlp.fc1.weight", "vision/layers/mlp/fc1/kernel", "linear"),
    (_VL + "mlp.fc1.bias", "vision/layers/mlp/fc1/bias", "same"),
    (_VL + "mlp.fc2.weight", "vision/layers/mlp/fc2/kernel", "linear"),
    (_VL + "mlp.fc2.bias", "vision/layers/mlp/fc2/bias", "same"),
    ("multi_modal_projector.linear_1.weight", "projector/linear_1/kernel", "linear"),
    ("multi_modal_projector.linear_1.bias", "projector/linear_1/bias", "same"),
    ("multi_modal_projector.linear_2.weight", "projector/linear_2/kernel", "linear"),
    ("multi_modal_projector.linear_2.bias", "projector/linear_2/bias", "same"),
    (_T + "embed_tokens.weight", "llm/embed_tokens/embedding", "same"),
    (_TL + "input_layernorm.weight", "llm/layers/input_layernorm/scale", "same"),
    (_TL + "post_attention_layernorm.weight", "llm/layers/post_attention_layernorm/scale", "same"),
    (_TL + "self_attn.q_proj.weight", "llm/layers/attn/q/kernel", "heads_in"),
    (_TL + "self_attn.k_proj.weight", "llm/layers/attn/k/kernel", "heads_in"),
    (_TL + "self_attn.v_proj.weight", "llm/layers/attn/v/kernel", "heads_in"),
    (_TL + "self_attn.o_proj.weight", "llm/layers/attn/o/kernel", "heads_out"),
    (_TL + "mlp.gate_proj.weight", "llm/layers/mlp/gate/kernel", "linear"),
    (_TL + "mlp.up_proj.weight", "llm/layers/mlp/up/kernel", "linear"),
    (_TL + "mlp.down_proj.weight", "llm/layers/mlp/down/kernel", "linear"),
    (_T + "norm.weight", "llm/norm/scale", "same"),
    ("language_model.lm_head.weight", "llm/lm_head/kernel", "linear"),
)

# Other spellings of the same tensors -> the table's spelling (first matching prefix wins).
_LLAVA_ALIASES = (
    ("model.vision_tower.vision_model.", _V), ("vision_tower.vision_model.", _V), ("model.vision_tower.", _V),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.model.", _T), ("model.language_model.", _T), ("lm_head.", "language_model.lm_head."),
)
_CLIP_ALIASES = (("vision_model.", _V), ("embeddings.", _V + "embeddings."), ("encoder.", _V + "encoder."),
                 ("pre_layrnorm.", _V + "pre_layrnorm."), ("post_layernorm.", _V + "post_layernorm."))
_LLAMA_ALIASES = (("model.", _T), ("lm_head.", "language_model.lm_head."))
# Tensors of a full CLIPModel checkpoint that LLaVA does not use.
_CLIP_UNUSED = re.compile(r"^(text_model\.|visual_projection\.|text_projection\.|logit_scale)")

_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_SHARD_BYTES = 4 << 30   # HF's usual shard size; one file for anything smaller


# ---------------------------------------------------------------- safetensors files


def _read_tensors(d: str) -> dict[str, np.ndarray]:
  """All tensors of a HF directory (single file or sharded with an index)."""
  if os.path.isfile(os.path.join(d, _INDEX)):
    with open(os.path.join(d, _INDEX)) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
  elif os.path.isfile(os.path.join(d, _WEIGHTS)):
    files = [_WEIGHTS]
  else:
    raise UserError(f"{d} has no {_WEIGHTS} or {_INDEX}; save the model with safetensors "
                    "(save_pretrained(..., safe_serialization=True))")
  out = {}
  for name in files:
    try:
      out.update(safetensors.numpy.load_file(os.path.join(d, name)))
    except (OSError, ValueError, safetensors.SafetensorError) as e:
      raise UserError(f"cannot read {os.path.join(d, name)} ({e}); is the download complete?") from e
  return out


def _write_tensors(d: str, tensors: dict[str, np.ndarray]) -> None:
  """Writes `model.safetensors`, or shards plus an index when over `_SHARD_BYTES`."""
  shards, size = [{}], 0
  for name in sorted(tensors):
    t = np.ascontiguousarray(tensors[name])
    if size and size + t.nbytes > _SHARD_BYTES:
      shards.append({})
      size = 0
    shards[-1][name] = t
    size += t.nbytes
  meta = {"format": "pt"}   # transformers expects this metadata key
  if len(shards) == 1:
    safetensors.numpy.save_file(shards[0], os.path.join(d, _WEIGHTS), metadata=meta)
    return
  weight_map = {}
  for k, shard in enumerate(shards):
    fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
    safetensors.numpy.save_file(shard, os.path.join(d, fname), metadata=meta)
    weight_map.update({name: fname for name in shard})
  total = sum(t.nbytes for t in tensors.values())
  with open(os.path.join(d, _INDEX), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    raise UserError(f"{path} not found; pass a Hugging Face model directory (with config.json)")
  with open(path) as f:
    return json.load(f)


def _canonical(tensors: dict[str, np.ndarray], aliases, unused=None) -> dict[str, np.ndarray]:
  out = {}
  for name, t in tensors.items():
    if unused is not None and unused.match(name):
      continue
    for old, new in aliases:
      if name.startswith(old):
        name = new + name[len(old):]
        break
    out[name] = t
  return out


# ---------------------------------------------------------------- config mapping


def _weights_dtype(tensors: dict[str, np.ndarray]) -> str:
  dtypes = {str(t.dtype) for t in tensors.values()}
  for name in ("bfloat16", "float16", "float32"):
    if name in dtypes:
      return name
  raise UserError(f"unsupported weight dtypes {sorted(dtypes)}; expected float32, bfloat16 or float16")


def _vision_from_hf(v: dict[str, Any]) -> presets.VisionConfig:
  if v.get("model_type", "clip_vision_model") not in ("clip_vision_model", "clip"):
    raise UserError(f"vision tower {v.get('model_type')!r} is not supported; lcbm-jax uses a CLIP ViT")
  return presets.VisionConfig(
      image_size=v.get("image_size", 224), patch_size=v.get("patch_size", 32),
      hidden_size=v.get("hidden_size", 768), intermediate_size=v.get("intermediate_size", 3072),
      num_hidden_layers=v.get("num_hidden_layers", 12), num_attention_heads=v.get("num_attention_heads", 12),
      layer_norm_eps=v.get("layer_norm_eps", 1e-5), hidden_act=v.get("hidden_act", "quick_gelu"))


def _text_from_hf(t: dict[str, Any]) -> presets.TextConfig:
  if t.get("model_type", "llama") != "llama":
    raise UserError(f"language model {t.get('model_type')!r} is not supported; lcbm-jax uses Llama")
  rope = t.get("rope_parameters") or {}
  if t.get("rope_scaling") or rope.get("rope_type", "default") != "default":
    raise UserError("RoPE scaling is not supported; use a Llama config with rope_type 'default'")
  if t.get("attention_bias") or t.get("mlp_bias"):
    raise UserError("Llama attention_bias / mlp_bias are not supported by lcbm-jax")
  if t.get("hidden_act", "silu") != "silu":
    raise UserError(f"Llama hidden_act {t.get('hidden_act')!r} is not supported; expected 'silu'")
  heads = t.get("num_attention_heads", 32)
  return presets.TextConfig(
      vocab_size=t.get("vocab_size", 32000), hidden_size=t.get("hidden_size", 4096),
      intermediate_size=t.get("intermediate_size", 11008), num_hidden_layers=t.get("num_hidden_layers", 32),
      num_attention_heads=heads, num_key_value_heads=t.get("num_key_value_heads") or heads,
      head_dim=t.get("head_dim"), rms_norm_eps=t.get("rms_norm_eps", 1e-6),
      rope_theta=float(rope.get("rope_theta", t.get("rope_theta", 10000.0))),
      max_position_embeddings=t.get("max_position_embeddings", 2048),
      tie_word_embeddings=bool(t.get("tie_word_embeddings", False)))


def config_from_hf(hf: dict[str, Any], param_dtype: str = "float32") -> presets.LCBMConfig:
  """LlavaConfig (as the dict in config.json) -> LCBMConfig."""
  if hf.get("model_type") != "llava":
    raise UserError(f"config.json has model_type {hf.get('model_type')!r}; expected 'llava' "
                    "(for a CLIP + Llama pair use --vision-dir and --llm-dir)")
  if hf.get("vision_feature_select_strategy", "default") != "default":
    raise UserError("vision_feature_select_strategy 'full' is not supported; lcbm-jax drops the class token")
  if not isinstance(hf.get("vision_feature_layer", -2), int):
    raise UserError("several vision_feature_layer values are not supported; use one layer index")
  if not hf.get("multimodal_projector_bias", True) or hf.get("projector_hidden_act", "gelu") != "gelu":
    raise UserError("only the LLaVA mlp2x_gelu projector with biases is supported")
  text = _text_from_hf(hf.get("text_config") or {})
  if hf.get("tie_word_embeddings") and not text.tie_word_embeddings:
    text = dataclasses.replace(text, tie_word_embeddings=True)
  return presets.LCBMConfig(
      vision=_vision_from_hf(hf.get("vision_config") or {}), projector=presets.ProjectorConfig(), text=text,
      image_token_id=hf.get("image_token_index", hf.get("image_token_id", 32000)),
      vision_feature_layer=hf.get("vision_feature_layer", -2),
      param_dtype=param_dtype, compute_dtype=param_dtype)


def config_to_hf(cfg: presets.LCBMConfig, dtype: str) -> dict[str, Any]:
  """LCBMConfig -> the dict LlavaConfig writes as config.json."""
  v, t = cfg.vision, cfg.text
  return {
      "architectures": ["LlavaForConditionalGeneration"],
      "model_type": "llava",
      "dtype": dtype,
      "image_token_index": cfg.image_token_id,
      "image_seq_length": cfg.num_image_tokens,
      "projector_hidden_act": cfg.projector.hidden_act,
      "multimodal_projector_bias": cfg.projector.bias,
      "vision_feature_layer": cfg.vision_feature_layer,
      "vision_feature_select_strategy": "default",
      "tie_word_embeddings": t.tie_word_embeddings,
      "vision_config": {
          "model_type": "clip_vision_model", "hidden_act": v.hidden_act, "hidden_size": v.hidden_size,
          "image_size": v.image_size, "intermediate_size": v.intermediate_size,
          "layer_norm_eps": v.layer_norm_eps, "num_attention_heads": v.num_attention_heads,
          "num_channels": 3, "num_hidden_layers": v.num_hidden_layers, "patch_size": v.patch_size,
          "attention_dropout": 0.0},
      "text_config": {
          "model_type": "llama", "hidden_act": "silu", "vocab_size": t.vocab_size,
          "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
          "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
          "num_key_value_heads": t.num_key_value_heads, "head_dim": t.head_dim, "rms_norm_eps": t.rms_norm_eps,
          "rope_parameters": {"rope_type": "default", "rope_theta": t.rope_theta},
          "max_position_embeddings": t.max_position_embeddings,
          "tie_word_embeddings": t.tie_word_embeddings, "attention_bias": False, "mlp_bias": False,
          "attention_dropout": 0.0},
  }


# ---------------------------------------------------------------- parameters


def _param_shapes(cfg: presets.LCBMConfig) -> dict[str, tuple[int, ...]]:
  """Our path -> shape, from the model's own init (abstractly; nothing is allocated)."""
  abstract = lcbm.abstract_params(cfg)
  return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def _set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split("/")
  for p in parents:
    tree = tree.setdefault(p, {})
  tree[leaf] = value


def _get(tree: dict, path: str):
  for p in path.split("/"):
    tree = tree[p]
  return tree


def params_from_hf(cfg: presets.LCBMConfig, tensors: dict[str, np.ndarray],
                   allow_missing: tuple[str, ...] = ()) -> dict:
  """HF tensors (canonical names) -> our nested params (numpy, dtypes kept bit for bit).

  Every HF tensor must be used and every parameter filled, except our paths starting with one of
  `allow_missing` (left out of the result for the caller to initialise).
  """
  shapes = _param_shapes(cfg)
  left = dict(tensors)
  params: dict = {}
  for hf_name, path, kind in PARAM_TABLE:
    if path not in shapes:
      continue   # e.g. lm_head when embeddings are tied
    shape = shapes[path]
    if "{i}" in hf_name:
      names = [hf_name.format(i=i) for i in range(shape[0])]
      if any(n not in left for n in names):
        if path.startswith(allow_missing):
          continue
        raise UserError(f"the checkpoint lacks {hf_name} for some layers (config says {shape[0]} layers)")
      w = np.stack([_TO_OURS[kind](left.pop(n), shape[1:]) for n in names])
    else:
      if hf_name not in left:
        if path.startswith(allow_missing):
          continue
        raise UserError(f"the checkpoint lacks {hf_name} (needed for {path}); is it a LLaVA/CLIP/Llama model?")
      w = _TO_OURS[kind](left.pop(hf_name), shape)
    if w.shape != shape:
      raise UserError(f"{hf_name} has shape {w.shape} in our layout, but config.json implies {shape}")
    _set(params, path, np.ascontiguousarray(w))
  if cfg.text.tie_word_embeddings:
    left.pop("language_model.lm_head.weight", None)   # some checkpoints store the tied copy
  if left:
    names = sorted(left)
    raise UserError(f"{len(names)} checkpoint tensors have no place in the model, e.g. {names[:3]}; "
                    "the config does not match the weights")
  return params


def params_to_hf(params: dict, dtype: str | None = None) -> dict[str, np.ndarray]:
  """Our params -> HF tensors. dtype None keeps each tensor's own dtype."""
  out = {}
  for hf_name, path, kind in PARAM_TABLE:
    try:
      w = np.asarray(_get(params, path))
    except KeyError:
      if path == "llm/lm_head/kernel":
        continue   # tied embeddings
      raise
    if dtype is not None:
      w = w.astype(_DTYPES[dtype])
    if "{i}" in hf_name:
      for i in range(w.shape[0]):
        out[hf_name.format(i=i)] = np.ascontiguousarray(_TO_HF[kind](w[i]))
    else:
      out[hf_name] = np.ascontiguousarray(_TO_HF[kind](w))
  return out


# ---------------------------------------------------------------- tokenizer and processor files


def image_processor_config(cfg: presets.LCBMConfig) -> dict[str, Any]:
  """CLIPImageProcessor settings that produce exactly our images (shortest edge, center crop)."""
  s = cfg.vision.image_size
  return {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": s},
          "resample": 3, "do_center_crop": True, "crop_size": {"height": s, "width": s}, "do_rescale": True,
          "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(cfg.image_mean),
          "image_std": list(cfg.image_std), "do_convert_rgb": True}


def _write_processor(out_dir: str, cfg: presets.LCBMConfig, image_token: str) -> None:
  # LlavaProcessor expands <image> to (S/p)^2 + num_additional_image_tokens - 1 ("default" drops the
  # class token) = our num_image_tokens.
  proc = {"processor_class": "LlavaProcessor", "image_processor": image_processor_config(cfg),
          "patch_size": cfg.vision.patch_size, "vision_feature_select_strategy": "default",
          "num_additional_image_tokens": 1, "image_token": image_token}
  with open(os.path.join(out_dir, "processor_config.json"), "w") as f:
    json.dump(proc, f, indent=2)
  # transformers 4.x reads the image processor from its own file; 5.x from the nested entry above.
  with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
    json.dump(proc["image_processor"], f, indent=2)


# ---------------------------------------------------------------- public entry points


def is_hf_dir(path: str) -> bool:
  """True for a directory holding a Hugging Face LLaVA config.json."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    return False
  try:
    with open(cfg_path) as f:
      return json.load(f).get("model_type") == "llava"
  except (OSError, ValueError):
    return False


def _tokenizer_file(d: str) -> str | None:
  path = os.path.join(d, "tokenizer.model")
  return path if os.path.isfile(path) else None


def load_llava(hf_dir: str) -> tuple[presets.LCBMConfig, dict, str | None]:
  """A LlavaForConditionalGeneration directory -> (cfg, params as numpy, tokenizer.model path or None)."""
  if not os.path.isdir(hf_dir):
    raise UserError(f"{hf_dir} is not a directory; pass a Hugging Face LLaVA directory")
  tensors = _canonical(_read_tensors(hf_dir), _LLAVA_ALIASES)
  cfg = config_from_hf(_read_json(os.path.join(hf_dir, "config.json")), _weights_dtype(tensors))
  return cfg, params_from_hf(cfg, tensors), _tokenizer_file(hf_dir)


def _grow_vocab(params: dict, vocab: int) -> dict:
  """Appends embedding (and lm_head) rows up to `vocab`, each the mean of the existing rows (as LLaVA
  does when it adds `<image>` and `<pad>` to Llama's vocabulary)."""
  llm = params["llm"]
  emb = llm["embed_tokens"]["embedding"]
  rows = np.broadcast_to(emb.astype(np.float32).mean(0, keepdims=True), (vocab - emb.shape[0], emb.shape[1]))
  llm["embed_tokens"]["embedding"] = np.concatenate([emb, rows.astype(emb.dtype)])
  if "lm_head" in llm:
    head = llm["lm_head"]["kernel"]
    cols = np.broadcast_to(head.astype(np.float32).mean(1, keepdims=True), (head.shape[0], vocab - head.shape[1]))
    llm["lm_head"]["kernel"] = np.concatenate([head, cols.astype(head.dtype)], axis=1)
  return params


def load_clip_llama(vision_dir: str, llm_dir: str, *, seed: int = 0) -> tuple[presets.LCBMConfig, dict, str | None]:
  """A CLIP vision directory + a Llama directory -> LLaVA params with a freshly initialised projector.

  The image token is the tokenizer's `<image>` (appended to a LLaMA vocabulary by
  `data_pipeline.tokenizer.Tokenizer`); the embeddings grow to hold it, rounded up to a multiple of
  64 as in LLaVA-1.5. Without a tokenizer.model in `llm_dir` the last id stands for the image.
  """
  for d in (vision_dir, llm_dir):
    if not os.path.isdir(d):
      raise UserError(f"{d} is not a directory; pass Hugging Face CLIP and Llama directories")
  vjson = _read_json(os.path.join(vision_dir, "config.json"))
  if vjson.get("model_type") == "clip":
    vjson = vjson.get("vision_config") or {}
  tensors = _canonical(_read_tensors(vision_dir), _CLIP_ALIASES, _CLIP_UNUSED)
  tensors.update(_canonical(_read_tensors(llm_dir), _LLAMA_ALIASES))
  text = _text_from_hf(_read_json(os.path.join(llm_dir, "config.json")))
  dtype = _weights_dtype(tensors)
  cfg = presets.LCBMConfig(vision=_vision_from_hf(vjson), projector=presets.ProjectorConfig(), text=text,
                           image_token_id=text.vocab_size - 1, param_dtype=dtype, compute_dtype=dtype)
  params = params_from_hf(cfg, tensors, allow_missing=("projector/",))
  tokenizer_file = _tokenizer_file(llm_dir)
  if tokenizer_file is not None:
    tok = tokenizer_lib.Tokenizer.load(tokenizer_file)
    if tok.vocab_size > text.vocab_size:
      vocab = -(-tok.vocab_size // 64) * 64
      params = _grow_vocab(params, vocab)
      text = dataclasses.replace(text, vocab_size=vocab)
    cfg = dataclasses.replace(cfg, text=text, image_token_id=tok.image_id)
  fresh = lcbm.init_params(cfg, jax.random.key(seed))
  params["projector"] = jax.tree.map(lambda x: np.asarray(x).astype(_DTYPES[dtype]), fresh["projector"])
  return cfg, params, tokenizer_file


def save_llava(out_dir: str, cfg: presets.LCBMConfig, params: dict, tokenizer=None,
               *, dtype: str | None = None, image_token: str = "<image>") -> None:
  """Writes a directory that LlavaForConditionalGeneration / AutoTokenizer / AutoProcessor load.

  tokenizer: a `data_pipeline.tokenizer.Tokenizer`, a tokenizer.model path, or None (weights and
  config only). dtype None keeps each parameter's dtype (a bit-for-bit round trip of an import).
  """
  if dtype is not None and dtype not in _DTYPES:
    raise UserError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
  os.makedirs(out_dir, exist_ok=True)
  tensors = params_to_hf(params, dtype)
  config = config_to_hf(cfg, dtype or _weights_dtype(tensors))
  gen = {}
  if tokenizer is not None:
    if hasattr(tokenizer, "model_proto"):
      model_bytes = tokenizer.model_proto
    else:
      with open(tokenizer, "rb") as f:
        model_bytes = f.read()
    gen = tokenizer_lib.write_hf_tokenizer(out_dir, model_bytes, image_token)
    _write_processor(out_dir, cfg, image_token)
    config["text_config"].update(gen)
  _write_tensors(out_dir, tensors)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump(gen, f, indent=2)
