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
import functools
import json
import math
import os
import re
from typing import Any

import jax
import ml_dtypes
import numpy as np
import safetensors.numpy

from data_pipeline import chat, hf_tokenizer
from data_pipeline import images as images_lib
from data_pipeline import tokenizer as tokenizer_lib
from lcbm_jax import checkpoint, inference_images
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

IMAGE_TOKEN = "<image>"
_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_SHARD_BYTES = 4 << 30   # HF's usual shard size; one file for anything smaller


# ---------------------------------------------------------------- safetensors files


# safetensors dtype names -> numpy (https://github.com/huggingface/safetensors, "Format").
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_MAX_HEADER = 100 << 20   # safetensors' own limit on the JSON header
# config.json, an index, processor files: a real one is a few KB (an index of a 70B model ~100 KB).
_MAX_JSON = 16 << 20


class TensorFiles:
  """The safetensors tensors of a Hugging Face directory, read one at a time on demand.

  Opening reads only the headers; `get(name)` reads that tensor with a plain positioned read (a
  weight is then placed on the devices and dropped before the next is read). The safetensors
  library would map each file instead, and every page it touches stays resident until the file is
  closed: a second copy of the model in host memory for the whole import. The header is validated
  as the format defines it (offsets inside the file, sizes matching dtype and shape). Names are
  canonicalised with `aliases` (the table's spelling); `unused` names are skipped.
  """

  def __init__(self, directory: str, aliases=(), unused: re.Pattern | None = None):
    self.directory = directory
    self._where: dict[str, tuple[str, str, tuple[int, ...], int]] = {}   # name -> (path, dtype, shape, offset)
    for name in _weight_files(directory):
      path = os.path.join(directory, name)
      for key, (dtype, shape, offset) in _read_header(path).items():
        if unused is not None and unused.match(key):
          continue
        canonical = _canonical_name(key, aliases)
        if canonical in self._where:   # two shards (or two spellings) of one tensor: which one is meant?
          raise UserError(f"{directory} holds the tensor {key} twice ({os.path.basename(self._where[canonical][0])} "
                          f"and {name}); the checkpoint is inconsistent")
        self._where[canonical] = (path, dtype, shape, offset)

  def names(self) -> set[str]:
    return set(self._where)

  def get(self, name: str) -> np.ndarray:
    path, dtype, shape, offset = self._where[name]
    count = math.prod(shape)
    with open(path, "rb") as f:
      out = np.fromfile(f, dtype=_ST_DTYPES[dtype], count=count, offset=offset)
    if out.size != count:
      raise UserError(f"{path} ends inside tensor {name}; is the download complete?")
    return out.reshape(shape)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._where[name][2]

  def dtypes(self) -> set[str]:
    return {np.dtype(_ST_DTYPES[d]).name for _, d, _, _ in self._where.values()}


def _read_header(path: str) -> dict[str, tuple[str, tuple[int, ...], int]]:
  """tensor name -> (dtype, shape, absolute data offset) of one safetensors file.

  Everything is checked against the file's size from the header alone, as the format defines it
  (and as the safetensors library checks): a header of at most 100 MiB inside the file, integer
  shapes and offsets, each tensor's byte range exactly its dtype times its shape, the ranges tiling
  the data buffer with no overlap and no hole. Sizes are Python ints, so a shape cannot overflow.
  """
  def bad(why: str) -> UserError:
    return UserError(f"{path} is not a valid safetensors file ({why}); is the download complete?")
  try:
    with open(path, "rb") as f:
      size = os.fstat(f.fileno()).st_size
      head = f.read(8)
      if len(head) < 8:
        raise bad("shorter than its header")
      n = int.from_bytes(head, "little")
      if n > min(_MAX_HEADER, size - 8):
        raise bad(f"its header claims {n:,} bytes in a {size:,}-byte file")
      header = json.loads(f.read(n))
  except OSError as e:
    raise UserError(f"cannot read {path} ({e})") from None
  except (ValueError, RecursionError) as e:   # RecursionError: JSON nested too deep to parse
    raise bad(f"header is not JSON: {type(e).__name__}: {str(e)[:200]}") from None
  if not isinstance(header, dict):
    raise bad("header is not a JSON object")
  out, ranges, base = {}, [], 8 + n
  for key, info in header.items():
    if key == "__metadata__":
      continue
    try:
      dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    except (KeyError, TypeError, ValueError):
      raise bad(f"entry {key!r} lacks dtype, shape or data_offsets") from None
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
      raise UserError(f"{path}: tensor {key} has dtype {str(dtype)[:40]!r}, which lcbm-jax does not read "
                      f"(it reads {', '.join(_ST_DTYPES)})")
    if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
      raise bad(f"tensor {key} has shape {str(shape)[:80]}, not a list of non-negative integers")
    shape = tuple(shape)
    nbytes = math.prod(shape) * np.dtype(_ST_DTYPES[dtype]).itemsize
    if not (_is_int(begin) and _is_int(end) and 0 <= begin <= end and end - begin == nbytes and base + end <= size):
      raise bad(f"tensor {key} has data_offsets {str([begin, end])[:80]} for {dtype}{list(shape)[:8]} "
                f"({nbytes:,} bytes) in a {size:,}-byte file")
    out[key] = (dtype, shape, base + begin)
    ranges.append((begin, end, key))
  at = 0
  for begin, end, key in sorted(ranges):
    if begin != at:
      raise bad(f"tensor {key} starts at byte {begin:,} of the data, where the previous one "
                f"{'overlaps it' if begin < at else 'left a hole'} (it ended at {at:,})")
    at = end
  if base + at != size:
    raise bad(f"the tensors end at byte {base + at:,} of a {size:,}-byte file")
  return out


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _weight_files(d: str) -> list[str]:
  """The safetensors files of `d` (one file, or the shards its index names, each inside `d`)."""
  if os.path.isfile(os.path.join(d, _INDEX)):
    try:
      weight_map = _read_json(os.path.join(d, _INDEX))["weight_map"]
      files = sorted(set(weight_map.values()))
    except (UserError, KeyError, TypeError, AttributeError):
      raise UserError(f"{os.path.join(d, _INDEX)} is not a safetensors index (a JSON object with a weight_map "
                      "of tensor name -> shard file)") from None
    for name in files:
      # A shard name is a file of this directory, never a path elsewhere.
      if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise UserError(f"{os.path.join(d, _INDEX)} names the shard {name!r} outside {d}; refusing to read it")
      if not os.path.isfile(os.path.join(d, name)):
        raise UserError(f"{os.path.join(d, name)} (listed in {_INDEX}) is missing; is the download complete?")
    return files
  if os.path.isfile(os.path.join(d, _WEIGHTS)):
    return [_WEIGHTS]
  pickled = sorted(n for n in os.listdir(d) if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
  if pickled:
    raise UserError(f"{d} ships only pickled weights ({', '.join(pickled[:3])}), which lcbm-jax never unpickles "
                    "(they can run code); convert them once with transformers: "
                    "AutoModel.from_pretrained(d).save_pretrained(out, safe_serialization=True)")
  raise UserError(f"{d} has no {_WEIGHTS} or {_INDEX}; save the model with safetensors "
                  "(save_pretrained(..., safe_serialization=True))")


def _read_tensors(d: str, aliases=(), unused=None) -> dict[str, np.ndarray]:
  """All tensors of a HF directory, canonicalised (tests and small models; imports use TensorFiles)."""
  files = TensorFiles(d, aliases, unused)
  return {name: files.get(name) for name in sorted(files.names())}


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
  """A JSON object from a model directory: bounded in size, one-line errors for anything else."""
  if not os.path.isfile(path):
    raise UserError(f"{path} not found; pass a Hugging Face model directory (with config.json)")
  try:
    with open(path, "rb") as f:
      raw = f.read(_MAX_JSON + 1)
    if len(raw) > _MAX_JSON:
      raise UserError(f"{path} is over {_MAX_JSON >> 20} MiB; it is not a model's JSON file")
    d = json.loads(raw)
  except OSError as e:
    raise UserError(f"cannot read {path} ({e})") from None
  except (ValueError, RecursionError) as e:
    raise UserError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
  if not isinstance(d, dict):
    raise UserError(f"{path} holds a JSON {type(d).__name__}, not an object")
  return d


def _section(d: dict[str, Any], key: str) -> dict[str, Any]:
  """A nested config object (`text_config`, `vision_config`, ...); absent or null is {} (defaults)."""
  v = d.get(key)
  if v is None:
    return {}
  if not isinstance(v, dict):
    raise UserError(f"config.json: {key} is a {type(v).__name__}, not an object")
  return v


def _canonical_name(name: str, aliases) -> str:
  for old, new in aliases:
    if name.startswith(old):
      return new + name[len(old):]
  return name


# ---------------------------------------------------------------- config mapping


def _weights_dtype(dtypes: set[str]) -> str:
  """The dtype a checkpoint is stored in (the widest-spread low precision wins over float32)."""
  dtypes = {"bfloat16" if d in ("bf16", "bfloat16") else "float16" if d in ("f16", "float16") else
            "float32" if d in ("f32", "float32") else d for d in dtypes}
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
  rope = _section(t, "rope_parameters")
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
      rope_theta=rope.get("rope_theta", t.get("rope_theta", 10000.0)),
      max_position_embeddings=t.get("max_position_embeddings", 2048),
      tie_word_embeddings=t.get("tie_word_embeddings") or False)


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
  text = _text_from_hf(_section(hf, "text_config"))
  if hf.get("tie_word_embeddings") and not text.tie_word_embeddings:
    text = dataclasses.replace(text, tie_word_embeddings=True)
  return presets.LCBMConfig(
      vision=_vision_from_hf(_section(hf, "vision_config")), projector=presets.ProjectorConfig(), text=text,
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


@functools.lru_cache(maxsize=4)   # opening checks the shapes, reading checks them again
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


# Our layout's shape -> the HF tensor's shape, per transform (checked from the headers before reading).
_HF_SHAPE = {
    "same": lambda s: s,
    "linear": lambda s: s[::-1],
    "heads_in": lambda s: (s[1] * s[2], s[0]),
    "heads_out": lambda s: (s[2], s[0] * s[1]),
    "heads_bias": lambda s: (s[0] * s[1],),
    "patch": lambda s: (s[3], s[2], s[0], s[1]),
}


class _Tensors:
  """A dict of HF tensors with TensorFiles' interface (tests, in-memory conversions)."""

  def __init__(self, tensors: dict[str, np.ndarray]):
    self._t = tensors

  def names(self) -> set[str]:
    return set(self._t)

  def get(self, name: str) -> np.ndarray:
    return self._t[name]

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._t[name].shape)


class _Union:
  """Several tensor sources as one (a CLIP directory plus a Llama directory)."""

  def __init__(self, *sources):
    self._of = {name: src for src in sources for name in src.names()}

  def names(self) -> set[str]:
    return set(self._of)

  def get(self, name: str) -> np.ndarray:
    return self._of[name].get(name)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._of[name].shape(name)


def leaf_readers(cfg: presets.LCBMConfig, source, allow_missing: tuple[str, ...] = ()) -> dict:
  """Our path -> a function reading that parameter (numpy, our layout, dtype kept bit for bit).

  Checks first, from the headers alone, that every HF tensor is used, every parameter filled (except
  paths starting with one of `allow_missing`, left to the caller) and every shape right, so a wrong
  checkpoint fails with one line before anything is read. The config's shapes come from
  `jax.eval_shape` (its dimensions are bounded by `presets.MAX_DIM`), so an absurd config is refused
  here without allocating what it claims.
  """
  shapes = _param_shapes(cfg)
  left = source.names()
  readers = {}
  for hf_name, path, kind in PARAM_TABLE:
    if path not in shapes:
      continue   # e.g. lm_head when embeddings are tied
    shape = shapes[path]
    layered = "{i}" in hf_name
    if layered and hf_name.format(i=shape[0] - 1) not in left and not path.startswith(allow_missing):
      # Before naming every layer: a config claiming a million layers is answered from the last one,
      # so the names built below never outnumber the tensors the headers list.
      raise UserError(f"the checkpoint lacks {hf_name.format(i=shape[0] - 1)} (config says {shape[0]:,} layers); "
                      "the config does not match the weights")
    names = [hf_name.format(i=i) for i in range(shape[0])] if layered else [hf_name]
    missing = [n for n in names if n not in left]
    if missing:
      if path.startswith(allow_missing):
        continue
      if layered:
        raise UserError(f"the checkpoint lacks {hf_name} for some layers (config says {shape[0]} layers)")
      raise UserError(f"the checkpoint lacks {hf_name} (needed for {path}); is it a LLaVA/CLIP/Llama model?")
    want = tuple(_HF_SHAPE[kind](shape[1:] if layered else shape))
    for n in names:
      got = tuple(source.shape(n))
      if got != want:
        raise UserError(f"{n} has shape {list(got)} but config.json implies {list(want)} (our {path} "
                        f"{list(shape)}); the config does not match the weights")
    left -= set(names)

    def read(names=names, kind=kind, shape=shape, layered=layered):
      if not layered:
        return np.ascontiguousarray(_TO_OURS[kind](source.get(names[0]), shape))
      out = None
      for i, n in enumerate(names):   # layer by layer into one buffer: no second copy of the stack
        w = _TO_OURS[kind](source.get(n), shape[1:])
        if out is None:
          out = np.empty(shape, w.dtype)
        out[i] = w
      return out
    readers[path] = read
  if cfg.text.tie_word_embeddings:
    left.discard("language_model.lm_head.weight")   # some checkpoints store the tied copy
  if left:
    names = sorted(left)
    raise UserError(f"{len(names)} checkpoint tensors have no place in the model, e.g. {names[:3]}; "
                    "the config does not match the weights")
  return readers


def params_from_hf(cfg: presets.LCBMConfig, tensors, allow_missing: tuple[str, ...] = ()) -> dict:
  """HF tensors (canonical names; a dict or a TensorFiles) -> our nested params (numpy, dtypes kept).

  Every HF tensor must be used and every parameter filled, except our paths starting with one of
  `allow_missing` (left out of the result for the caller to initialise).
  """
  source = _Tensors(tensors) if isinstance(tensors, dict) else tensors
  params: dict = {}
  for path, read in leaf_readers(cfg, source, allow_missing).items():
    _set(params, path, read())
  return params


def place_params(cfg: presets.LCBMConfig, tensors, shardings, allow_missing: tuple[str, ...] = ()) -> dict:
  """HF tensors -> our params as jax.Arrays placed with `shardings` (see `checkpoint.place`)."""
  source = _Tensors(tensors) if isinstance(tensors, dict) else tensors
  return checkpoint.place(leaf_readers(cfg, source, allow_missing), shardings)


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
  """The image processor settings that produce exactly the model's images: a CLIPImageProcessor
  (shortest edge, centre crop), or a LlavaImageProcessor with do_pad for a pad-to-square model."""
  return images_lib.processing_to_hf(inference_images.image_processing(cfg))


def _write_processor(out_dir: str, cfg: presets.LCBMConfig, image_token: str) -> None:
  # LlavaProcessor expands <image> to (S/p)^2 + num_additional_image_tokens - 1 ("default" drops the
  # class token) = our num_image_tokens.
  proc = {"processor_class": "LlavaProcessor", "image_processor": image_processor_config(cfg),
          "patch_size": cfg.vision.patch_size, "vision_feature_select_strategy": "default",
          "num_additional_image_tokens": 1, "image_token": image_token}
  with open(os.path.join(out_dir, "processor_config.json"), "w") as f:
    json.dump(proc, f, indent=2)
  # transformers 4.x reads the image processor from its own file; 5.x from the nested entry above.
  # (transformers 5 with torchvision installed uses its torchvision backend, a few pixels off by a
  # level or two: data_pipeline/images.py says why; backend="pil" gives exactly ours.)
  with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
    json.dump(proc["image_processor"], f, indent=2)


# ---------------------------------------------------------------- public entry points


def is_hf_dir(path: str) -> bool:
  """True for a directory holding a Hugging Face LLaVA config.json."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    return False
  try:
    return _read_json(cfg_path).get("model_type") == "llava"
  except UserError:
    return False


def load_tokenizer(d: str, *, require_image: bool = True) -> Any:
  """The tokenizer a model directory ships: its tokenizer.json (the `tokenizers` library, what
  transformers runs), else its tokenizer.model (SentencePiece), else None."""
  if os.path.isfile(os.path.join(d, hf_tokenizer.TOKENIZER_JSON)):
    return hf_tokenizer.HFTokenizer.load(d, image_token=_processor_image_token(d), require_image=require_image)
  if os.path.isfile(os.path.join(d, "tokenizer.model")):
    return tokenizer_lib.Tokenizer.load(d)
  return None


def _processor_image_token(d: str) -> str | None:
  path = os.path.join(d, "processor_config.json")
  if not os.path.isfile(path):
    return None
  try:
    token = _read_json(path).get("image_token")
  except UserError:
    return None
  return token if isinstance(token, str) else None


def open_llava(hf_dir: str) -> tuple[presets.LCBMConfig, TensorFiles, Any]:
  """A LlavaForConditionalGeneration directory -> (cfg, its tensors unread, its tokenizer or None).

  The directory is taken as it is: the vocabulary is the config's (llava-1.5's 32,064 rows for 32,002
  tokens included), the tokenizer its own, its `<image>` the config's image_token_index.
  """
  if not os.path.isdir(hf_dir):
    raise UserError(f"{hf_dir} is not a directory; pass a Hugging Face LLaVA directory")
  hf = _read_json(os.path.join(hf_dir, "config.json"))
  if hf.get("model_type") != "llava":   # before reading weights: a CLIP or Llama dir is a common mix-up
    config_from_hf(hf)
  files = TensorFiles(hf_dir, _LLAVA_ALIASES)
  cfg = config_from_hf(hf, _weights_dtype(files.dtypes()))
  cfg = dataclasses.replace(cfg, **inference_images.fields_from_dir(hf_dir, cfg.vision.image_size))
  leaf_readers(cfg, files)   # config vs headers now, before a caller compiles anything for this cfg
  tok = load_tokenizer(hf_dir)
  if tok is not None:
    check_tokenizer(cfg, tok, hf_dir)
  return cfg, files, tok


def check_tokenizer(cfg: presets.LCBMConfig, tok, where: str) -> None:
  """A one-line error when the tokenizer's ids do not fit the embedding or its `<image>` differs."""
  if tok.vocab_size > cfg.text.vocab_size:
    raise UserError(f"{where}: the tokenizer has {tok.vocab_size} ids but the model's vocabulary has "
                    f"{cfg.text.vocab_size} rows; the tokenizer does not belong to these weights")
  if tok.image_id != cfg.image_token_id:
    raise UserError(f"{where}: the tokenizer's {IMAGE_TOKEN} is id {tok.image_id} but the model's image token "
                    f"(image_token_index) is {cfg.image_token_id}; the tokenizer does not belong to this model")


def load_llava(hf_dir: str) -> tuple[presets.LCBMConfig, dict, Any]:
  """A LlavaForConditionalGeneration directory -> (cfg, params as numpy, tokenizer or None)."""
  cfg, files, tok = open_llava(hf_dir)
  return cfg, params_from_hf(cfg, files), tok


def _added_rows(readers: dict, vocab: int) -> dict:
  """Wraps the embedding (and lm_head) readers to append rows up to `vocab`, each the mean of the
  existing rows (as LLaVA-1.5 does when it adds `<image>` and `<pad>` to Llama's vocabulary)."""
  def grow(read, axis):
    def read_grown():
      w = read()
      mean = w.astype(np.float32).mean(axis, keepdims=True).astype(w.dtype)
      shape = list(w.shape)
      shape[axis] = vocab - w.shape[axis]
      return np.concatenate([w, np.broadcast_to(mean, shape)], axis=axis)
    return read_grown
  out = dict(readers)
  out["llm/embed_tokens/embedding"] = grow(readers["llm/embed_tokens/embedding"], 0)
  if "llm/lm_head/kernel" in readers:
    out["llm/lm_head/kernel"] = grow(readers["llm/lm_head/kernel"], 1)
  return out


class ClipLlama:
  """A CLIP vision directory + a Llama directory, as one LLaVA with a projector still to initialise.

  The one code path that adds tokens (`lcbm import-hf --vision-dir --llm-dir` and `init.vision_dir` /
  `init.llm_dir`): the Llama tokenizer gains `<image>` (and `<pad>` when it has none), and the
  embedding grows to hold them, rounded up to a multiple of 64 as in LLaVA-1.5, new rows the mean.
  """

  def __init__(self, vision_dir: str, llm_dir: str):
    for d in (vision_dir, llm_dir):
      if not os.path.isdir(d):
        raise UserError(f"{d} is not a directory; pass Hugging Face CLIP and Llama directories")
    vjson = _read_json(os.path.join(vision_dir, "config.json"))
    if vjson.get("model_type") == "clip":
      vjson = _section(vjson, "vision_config")
    text = _text_from_hf(_read_json(os.path.join(llm_dir, "config.json")))
    self.source = _Union(TensorFiles(vision_dir, _CLIP_ALIASES, _CLIP_UNUSED), TensorFiles(llm_dir, _LLAMA_ALIASES))
    dtype = _weights_dtype(_source_dtypes(self.source))
    self.tokenizer = _with_llava_tokens(load_tokenizer(llm_dir, require_image=False), llm_dir)
    self.base_vocab = text.vocab_size
    if self.tokenizer.vocab_size > text.vocab_size:
      text = dataclasses.replace(text, vocab_size=-(-self.tokenizer.vocab_size // 64) * 64)
    vision = _vision_from_hf(vjson)
    self.cfg = presets.LCBMConfig(vision=vision, projector=presets.ProjectorConfig(), text=text,
                                  image_token_id=self.tokenizer.image_id, param_dtype=dtype, compute_dtype=dtype,
                                  **inference_images.fields_from_dir(vision_dir, vision.image_size))
    self.readers()   # configs vs headers now, before a caller compiles anything for this cfg

  def readers(self) -> dict:
    """Readers of every parameter but the projector's."""
    base = dataclasses.replace(self.cfg, text=dataclasses.replace(self.cfg.text, vocab_size=self.base_vocab),
                               image_token_id=0)
    readers = leaf_readers(base, self.source, allow_missing=("projector/",))
    return _added_rows(readers, self.cfg.text.vocab_size) if self.cfg.text.vocab_size > self.base_vocab else readers


def _source_dtypes(source: _Union) -> set[str]:
  return set().union(*(s.dtypes() for s in {id(v): v for v in source._of.values()}.values()))


def _with_llava_tokens(tok, llm_dir: str):
  """The Llama tokenizer with `<image>` and a pad token (appended; existing ids never move)."""
  if tok is None:
    raise UserError(f"{llm_dir} has no tokenizer.json or tokenizer.model; a LLaVA needs the Llama's tokenizer")
  if isinstance(tok, tokenizer_lib.Tokenizer):
    return tok   # the SentencePiece wrapper appends <image> and <pad> itself
  return hf_tokenizer.add_tokens(tok, image_token=IMAGE_TOKEN, pad_token=tokenizer_lib.PAD_PIECE)


def projector_init(cfg: presets.LCBMConfig, seed: int):
  """A fresh projector (jitted: only the projector's part of the init is computed)."""
  return jax.jit(lambda key: lcbm.init_params(cfg, key)["projector"])(jax.random.key(seed))


def load_clip_llama(vision_dir: str, llm_dir: str, *, seed: int = 0) -> tuple[presets.LCBMConfig, dict, Any]:
  """A CLIP vision directory + a Llama directory -> (cfg, LLaVA params as numpy with a fresh projector,
  the tokenizer with `<image>` and pad)."""
  pair = ClipLlama(vision_dir, llm_dir)
  params: dict = {}
  for path, read in pair.readers().items():
    _set(params, path, read())
  params["projector"] = jax.tree.map(np.asarray, jax.device_get(projector_init(pair.cfg, seed)))
  return pair.cfg, params, pair.tokenizer


def save_llava(out_dir: str, cfg: presets.LCBMConfig, params: dict, tokenizer=None,
               *, dtype: str | None = None, conversation: str = "plain") -> None:
  """Writes a directory that LlavaForConditionalGeneration / AutoTokenizer / AutoProcessor load.

  tokenizer: a tokenizer from `data_pipeline.tokenizer.load` (a Hugging Face one is written back byte
  for byte; a SentencePiece one as tokenizer.model + an equivalent tokenizer.json), or None (weights
  and config only). dtype None keeps each parameter's dtype (a bit-for-bit round trip of an import).
  conversation: the training prompt format, written as the chat template (`data_pipeline.chat`).
  """
  if dtype is not None and dtype not in _DTYPES:
    raise UserError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
  os.makedirs(out_dir, exist_ok=True)
  tensors = params_to_hf(params, dtype)
  config = config_to_hf(cfg, dtype or _weights_dtype({str(t.dtype) for t in tensors.values()}))
  gen = {}
  if tokenizer is not None:
    if isinstance(tokenizer, hf_tokenizer.HFTokenizer):
      tokenizer.save(out_dir)
      gen = tokenizer.special_ids()
      image_token = tokenizer.image_token
    else:
      gen = tokenizer.save_hf(out_dir, IMAGE_TOKEN)
      image_token = IMAGE_TOKEN
    template = chat.chat_template(conversation, bos=tuple(tokenizer.prefix_ids) == (gen.get("bos_token_id"),))
    if template is not None and not any(os.path.exists(os.path.join(out_dir, n))
                                        for n in ("chat_template.jinja", "chat_template.json")):
      with open(os.path.join(out_dir, "chat_template.jinja"), "w") as f:
        f.write(template)
    _write_processor(out_dir, cfg, image_token)
    config["text_config"].update(gen)
  _write_tensors(out_dir, tensors)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump(gen, f, indent=2)
