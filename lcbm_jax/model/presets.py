"""Model shapes: typed, validated config dataclasses and the one table of named presets.

Field names follow the Hugging Face config names (`hidden_size`, `num_key_value_heads`, ...)
so the interop code in `export/hf.py` maps them one to one.

  cfg = presets.get("tiny")                       # LCBMConfig
  cfg = dataclasses.replace(cfg, remat_policy="full")
  presets.names()      # ("tiny", "demo", "bench", "clip336-tinyllama-1.1b", "llava-1.5-7b", "llava-1.5-13b")

Configs round-trip through plain dicts (`cfg.to_dict()`, `LCBMConfig.from_dict(d)`) so checkpoints
can store them as JSON.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from lcbm_jax.errors import UserError

# OpenAI CLIP normalisation (what the LLaVA image processor uses): the default of every model config,
# from which training, evaluation, predict and export all take theirs.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

REMAT_POLICIES = ("none", "full", "dots", "save_attn_out")
DTYPES = ("float32", "bfloat16", "float16")


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(message)


# The largest dimension a config may name. Token ids and positions are int32, and no real model comes
# near it in any dimension; a larger value is a corrupt or hostile config.json, refused before any
# shape is built from it.
MAX_DIM = 2**31 - 1


def _integer(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)   # bool is an int in Python


def _positive(obj: Any, *fields: str) -> None:
  for f in fields:
    v = getattr(obj, f)
    # `"num_hidden_layers": true` is a broken config, not one layer.
    _check(_integer(v) and 0 < v <= MAX_DIM,
           f"{type(obj).__name__}.{f} must be a positive int up to {MAX_DIM:,}, got {v!r}")


def _positive_float(obj: Any, *fields: str) -> None:
  """Checks each field is a finite number > 0 and stores it as a float (JSON may give 10000 or 1e4)."""
  for f in fields:
    v = getattr(obj, f)
    _check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
           f"{type(obj).__name__}.{f} must be a finite number > 0, got {v!r}")
    object.__setattr__(obj, f, float(v))


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """CLIP ViT (transformers `CLIPVisionConfig`)."""
  image_size: int = 224
  patch_size: int = 16
  hidden_size: int = 768
  intermediate_size: int = 3072
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  layer_norm_eps: float = 1e-5
  hidden_act: str = "quick_gelu"

  def __post_init__(self):
    _positive(self, "image_size", "patch_size", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads")
    _check(self.image_size % self.patch_size == 0,
           f"vision.image_size ({self.image_size}) must be a multiple of vision.patch_size ({self.patch_size})")
    _check(self.hidden_size % self.num_attention_heads == 0,
           f"vision.hidden_size ({self.hidden_size}) must be divisible by vision.num_attention_heads "
           f"({self.num_attention_heads})")
    _check(self.hidden_act == "quick_gelu",
           f"vision.hidden_act {self.hidden_act!r} is not supported; CLIP uses 'quick_gelu'")
    _positive_float(self, "layer_norm_eps")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class ProjectorConfig:
  """LLaVA multimodal projector: linear(Dv -> D), activation, linear(D -> D)."""
  hidden_act: str = "gelu"   # HF "gelu" = exact erf GELU
  bias: bool = True

  def __post_init__(self):
    _check(self.hidden_act == "gelu",
           f"projector.hidden_act {self.hidden_act!r} is not supported; LLaVA uses 'gelu' (exact erf)")


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """Llama decoder (transformers `LlamaConfig`)."""
  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int = 32
  head_dim: int | None = None        # None = hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  max_position_embeddings: int = 4096
  tie_word_embeddings: bool = False
  # Query rows per block of the causal attention (0 = full attention; same result, see
  # attention.causal_attention). On 2 CPU cores a 512-token row spends about half of a demo
  # training step in the float32 softmax; skipping the all-masked upper blocks saves ~3/8 of it.
  attention_block: int = 128

  def __post_init__(self):
    _positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
    if self.head_dim is None:
      _check(self.hidden_size % self.num_attention_heads == 0,
             f"text.hidden_size ({self.hidden_size}) must be divisible by text.num_attention_heads "
             f"({self.num_attention_heads}), or set text.head_dim")
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
    _positive(self, "head_dim")
    _check(self.head_dim % 2 == 0, f"text.head_dim must be even for RoPE, got {self.head_dim}")
    _check(self.num_attention_heads % self.num_key_value_heads == 0,
           f"text.num_attention_heads ({self.num_attention_heads}) must be a multiple of "
           f"text.num_key_value_heads ({self.num_key_value_heads})")
    _positive_float(self, "rms_norm_eps", "rope_theta")
    _check(isinstance(self.tie_word_embeddings, bool),
           f"text.tie_word_embeddings must be a bool, got {self.tie_word_embeddings!r}")
    _check(isinstance(self.attention_block, int) and not isinstance(self.attention_block, bool)
           and self.attention_block >= 0,
           f"text.attention_block must be an int >= 0 (0 = full attention), got {self.attention_block!r}")


@dataclasses.dataclass(frozen=True)
class LCBMConfig:
  """The whole LLaVA-style model plus the knobs that change how it computes, not what."""
  vision: VisionConfig
  projector: ProjectorConfig
  text: TextConfig
  image_token_id: int                 # HF `image_token_index`
  max_images: int = 8                 # image slots per row (M in images[B, M, H, W, 3])
  vision_feature_layer: int = -2      # index into CLIP hidden_states ([0] = after pre_layrnorm)
  image_mean: tuple[float, float, float] = CLIP_MEAN
  image_std: tuple[float, float, float] = CLIP_STD
  # The rest of the image preprocessing (data_pipeline.images.ImageProcessing; the crop is
  # vision.image_size): the short side after the resize (0 = vision.image_size, so an image_size
  # override carries it along), the PIL resize filter (3 = bicubic), and LLaVA-1.5's pad to a square
  # of the mean colour before the resize (transformers' LlavaImageProcessor do_pad).
  image_shortest_edge: int = 0
  image_resample: int = 3
  image_pad_to_square: bool = False
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  remat_policy: str = "none"          # one of REMAT_POLICIES
  scan: bool = True                   # False = layers unrolled (same parameter layout)

  def __post_init__(self):
    for name, typ in (("vision", VisionConfig), ("projector", ProjectorConfig), ("text", TextConfig)):
      _check(isinstance(getattr(self, name), typ), f"LCBMConfig.{name} must be a {typ.__name__}")
    _check(_integer(self.image_token_id) and 0 <= self.image_token_id < self.text.vocab_size,
           f"image_token_id ({self.image_token_id}) must be in [0, text.vocab_size={self.text.vocab_size})")
    _check(_integer(self.max_images) and 0 <= self.max_images <= MAX_DIM,
           f"max_images must be an int >= 0, got {self.max_images!r}")
    n = self.vision.num_hidden_layers
    _check(_integer(self.vision_feature_layer) and -(n + 1) <= self.vision_feature_layer <= n,
           f"vision_feature_layer ({self.vision_feature_layer}) must index one of the {n + 1} CLIP hidden "
           f"states, i.e. lie in [{-(n + 1)}, {n}]")
    try:
      object.__setattr__(self, "image_mean", tuple(float(x) for x in self.image_mean))
      object.__setattr__(self, "image_std", tuple(float(x) for x in self.image_std))
      ok = len(self.image_mean) == 3 and len(self.image_std) == 3 and min(self.image_std) > 0
    except (TypeError, ValueError):
      ok = False
    _check(ok, f"image_mean and image_std need 3 numbers each (RGB), std > 0; got {self.image_mean!r}, "
           f"{self.image_std!r}")
    _check(isinstance(self.image_shortest_edge, int) and not isinstance(self.image_shortest_edge, bool)
           and (self.image_shortest_edge == 0 or self.image_shortest_edge >= self.vision.image_size),
           f"image_shortest_edge ({self.image_shortest_edge!r}) must be 0 (= vision.image_size) or an int >= "
           f"vision.image_size ({self.vision.image_size}): the centre crop is the vision input")
    _check(isinstance(self.image_resample, int) and not isinstance(self.image_resample, bool)
           and 0 <= self.image_resample <= 5,
           f"image_resample {self.image_resample!r} is not a PIL filter number (0-5; 3 = bicubic)")
    _check(isinstance(self.image_pad_to_square, bool),
           f"image_pad_to_square must be a bool, got {self.image_pad_to_square!r}")
    for f in ("param_dtype", "compute_dtype"):
      _check(getattr(self, f) in DTYPES, f"{f} {getattr(self, f)!r} is not one of {DTYPES}")
    _check(self.remat_policy in REMAT_POLICIES,
           f"remat_policy {self.remat_policy!r} is not one of {REMAT_POLICIES}")
    _check(isinstance(self.scan, bool), f"scan must be a bool, got {self.scan!r}")

  @property
  def num_image_tokens(self) -> int:
    """Tokens one image expands to (patches; the class token is dropped)."""
    return self.vision.num_patches

  @property
  def vision_feature_index(self) -> int:
    """vision_feature_layer as a non-negative index into the L + 1 hidden states."""
    return self.vision_feature_layer % (self.vision.num_hidden_layers + 1)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "LCBMConfig":
    try:
      d = dict(d)
      d["vision"] = VisionConfig(**d["vision"])
      d["projector"] = ProjectorConfig(**d["projector"])
      d["text"] = TextConfig(**d["text"])
      return cls(**d)
    except (KeyError, TypeError, ValueError) as e:
      raise UserError(f"model config is malformed ({e}); it must come from LCBMConfig.to_dict()") from e


_CLIP_L14_336 = VisionConfig(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                             num_hidden_layers=24, num_attention_heads=16, layer_norm_eps=1e-5)

# Small presets put the image token at 4, where data_pipeline/tokenizer.py places "<image>"
# (after unk 0, bos 1, eos 2, pad 3).
_PRESETS: dict[str, LCBMConfig] = {
    # Unit tests: every dimension small, GQA on, shapes that still split over 2-8 devices.
    "tiny": LCBMConfig(
        vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2),
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512),
        image_token_id=4, max_images=4),
    # The CPU demo run: learns something within minutes on 2 cores.
    "demo": LCBMConfig(
        vision=VisionConfig(image_size=64, patch_size=16, hidden_size=128, intermediate_size=512,
                            num_hidden_layers=3, num_attention_heads=4),
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
        image_token_id=4, max_images=8),
    # Throughput benchmarks (ViT-S/16-like tower, ~50M-parameter decoder).
    "bench": LCBMConfig(
        vision=VisionConfig(image_size=224, patch_size=16, hidden_size=384, intermediate_size=1536,
                            num_hidden_layers=6, num_attention_heads=6),
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096),
        # Unrolled layers: 1.2x on a 2-core CPU (no stacked activation buffers; llm.LLM._unrolled).
        image_token_id=4, max_images=8, scan=False),
    # ~1.4B: the shapes `init.vision_dir=openai/clip-vit-large-patch14-336` +
    # `init.llm_dir=TinyLlama/TinyLlama-1.1B-Chat-v1.0` import to (hf.ClipLlama: Llama's 32,000 tokens plus
    # <image> (id 32000) and <pad>, the embedding rounded up to a multiple of 64). TinyLlama has no RoPE
    # scaling, which import refuses. The real-size model that fits one accelerator for MFU figures.
    "clip336-tinyllama-1.1b": LCBMConfig(
        vision=_CLIP_L14_336,
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                        num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5,
                        max_position_embeddings=2048),
        image_token_id=32000, max_images=1, param_dtype="bfloat16", compute_dtype="bfloat16"),
    # Same shapes as llava-hf/llava-1.5-7b-hf (CLIP ViT-L/14-336 + Vicuna-7B v1.5).
    "llava-1.5-7b": LCBMConfig(
        vision=_CLIP_L14_336,
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                        max_position_embeddings=4096),
        image_token_id=32000, max_images=1, param_dtype="bfloat16", compute_dtype="bfloat16",
        remat_policy="full"),
    # Same shapes as llava-hf/llava-1.5-13b-hf (CLIP ViT-L/14-336 + Vicuna-13B v1.5).
    "llava-1.5-13b": LCBMConfig(
        vision=_CLIP_L14_336,
        projector=ProjectorConfig(),
        text=TextConfig(vocab_size=32064, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                        num_attention_heads=40, num_key_value_heads=40, rms_norm_eps=1e-5,
                        max_position_embeddings=4096),
        image_token_id=32000, max_images=1, param_dtype="bfloat16", compute_dtype="bfloat16",
        remat_policy="full"),
}


def names() -> tuple[str, ...]:
  return tuple(_PRESETS)


def get(name: str) -> LCBMConfig:
  if name not in _PRESETS:
    raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(_PRESETS)}")
  return _PRESETS[name]
