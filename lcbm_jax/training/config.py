"""Experiment configs: loading `NAME.py[:ARG]`, `--config.KEY=VALUE` overrides, and read tracking.

Every experiment config starts from `base_config()` (the one list of keys the trainer reads) and
changes values, never adds keys: an override or a config that names an unknown key fails with the
closest known keys. `RecordingConfig` wraps a config and notes which keys were read, so a test can
prove that no key is dead.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from typing import Any, Iterable

import ml_collections

from lcbm_jax.errors import UserError


def base_config() -> ml_collections.ConfigDict:
  """Every key the trainer reads, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_steps = 1000
  c.max_nonfinite_in_row = 5  # stop the run after this many consecutive non-finite steps

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny"     # name in lcbm_jax.model.presets
  # Shape overrides of the preset (0 = keep the preset's value); heads and the rest stay as they are.
  c.model.vocab_size = 0
  c.model.hidden_size = 0       # LLM width
  c.model.intermediate_size = 0  # LLM MLP width
  c.model.num_layers = 0        # LLM layers
  c.model.image_size = 0        # vision input side (a multiple of the patch size)
  # How it computes ("" = what the checkpoint or preset says): parameter and compute dtype
  # (float32, bfloat16, float16) and the remat policy (none, full, dots, save_attn_out).
  c.model.param_dtype = ""
  c.model.compute_dtype = ""
  c.model.remat = ""

  # Where the weights start (lcbm_jax/training/init.py has the order: own newest verified step ->
  # init checkpoint -> scratch). checkpoint: anything `--checkpoint` accepts (a params-only import, a
  # Hugging Face LLaVA directory or Hub id, another run's workdir or step). vision_dir + llm_dir: a
  # CLIP and a Llama directory (or Hub ids) with a fresh projector, as LLaVA's stage 1 starts.
  c.init = ml_collections.ConfigDict()
  c.init.checkpoint = ""
  c.init.vision_dir = ""
  c.init.llm_dir = ""

  c.data = ml_collections.ConfigDict()
  c.data.dir = ""             # built data directory (`lcbm data build --out`)
  c.data.tokenizer = ""       # tokenizer.model or its directory; "" = the one next to the data
  c.data.tasks = ("behavior_simulation",)
  c.data.weights = (1.0,)     # mixture weights, one per task
  c.data.mixture = "per_record"  # per_record: a task per record; by_weight: datasets resampled to the weights
  c.data.seq_len = 512
  c.data.batch_size = 8       # global, over all processes
  # Images the vision tower encodes per batch, over all processes (0 = batch_size x the model's
  # max_images, room for every row's maximum). A budget below that is what makes the tower's cost
  # follow the data: rows hold what fits, and `lcbm data inspect` prints the fill.
  c.data.images_per_batch = 0
  c.data.workers = 0          # Grain worker processes per JAX process
  c.data.content_only = False  # control arm: every task's content-only twin (behavior removed)
  c.data.conversation = "plain"  # prompt format: plain, or vicuna_v1 (LLaVA-1.5's USER:/ASSISTANT: turns)
  c.data.kbft_k = 0           # kbft training windows mask k consecutive scenes (0 = k drawn from 3, 5, 7, 11)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1            # -1 = all devices not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.end_lr_ratio = 0.1  # cosine ends at lr * end_lr_ratio
  c.optim.warmup_steps = 50
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.1
  c.optim.clip_norm = 1.0
  c.optim.grad_accum = 1      # micro-batches per step (scan), batch_size must divide evenly
  c.optim.no_decay = ("norm", "bias", "embed")   # path regexes without weight decay
  c.optim.freeze = ()                            # path regexes of frozen parameters

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 200
  c.checkpoint.keep = 3           # newest verified steps kept
  c.checkpoint.keep_every = 0     # also keep every K-th step for good (0 = none)

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 200    # held-out loss every N steps (0 = only at the end)
  c.eval.batches = 4          # batches per held-out split
  c.eval.splits = ("test",)   # held-out splits of data.dir (tweets: test_time, test_brand)

  c.log = ml_collections.ConfigDict()
  c.log.every_steps = 10      # JSONL / TensorBoard / W&B cadence
  c.log.wandb = False         # also log to Weights & Biases (needs `pip install wandb`)
  c.log.peak_flops = 0.0      # per-device peak FLOP/s for MFU; 0 = measure a matmul on CPU, table on GPU/TPU
  return c


def llava_recipe(preset: str, *, num_steps: int, batch_size: int, lr: float, freeze: tuple[str, ...],
                 save_every: int) -> ml_collections.ConfigDict:
  """What every LLaVA-1.5-style recipe shares (experiments/configs/llava_stage*.py, behavior_llava.py,
  lcbm.py): float32 weights computed in bfloat16 with full remat (a 2e-5 Adam step is below bfloat16's
  resolution), 2,048-token rows, the state sharded over every chip, AdamW betas (0.9, 0.999) without
  weight decay, 3% warm-up and cosine decay to 0, two checkpoints kept, an eval at every save."""
  c = base_config()
  c.model.preset = preset   # only where the init checkpoint stores no architecture
  c.model.param_dtype = "float32"
  c.model.compute_dtype = "bfloat16"
  c.model.remat = "full"
  c.data.seq_len = 2048
  c.data.batch_size = batch_size
  c.data.workers = 8
  c.mesh.data = 1
  c.mesh.fsdp = -1            # 7B needs its state sharded over every chip
  c.num_steps = num_steps
  c.optim.lr = lr
  c.optim.warmup_steps = round(0.03 * num_steps)
  c.optim.end_lr_ratio = 0.0
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.optim.freeze = freeze
  c.checkpoint.every_steps = c.eval.every_steps = save_every
  c.checkpoint.keep = 2
  c.eval.batches = 16
  c.log.every_steps = 10
  return c


SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "image_size")


def demo_model(c: ml_collections.ConfigDict, *, shapes: bool = True) -> ml_collections.ConfigDict:
  """The main job's model (experiments/configs/demo.py), the smallest a study runs: the `demo` preset
  narrowed to buy steps on 2 cores - a 2k vocabulary covers the embedded corpus, 32-pixel frames (4
  patches) carry the colour and brightness the audience reacts to, and depth more than width moves
  replay below the per-scene mean. `shapes=False` keeps the preset name and remat only, for a stage that
  starts from a checkpoint and takes its shapes with its weights (`init.checkpoint` leaves them at 0).

  Remat keeps only the attention outputs: on 2 CPU cores the step is bound by memory traffic, and
  re-running the cheap matmuls costs less than storing and re-reading every activation (0.80 s a step
  against 1.04 s without remat)."""
  c.model.preset = "demo"
  if shapes:
    c.model.vocab_size, c.model.hidden_size, c.model.intermediate_size = 2048, 128, 384
    c.model.num_layers, c.model.image_size = 6, 32
  c.model.remat = "save_attn_out"
  return c


def tiny_model(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `tiny` preset as it is: none of a recipe's shape overrides, no remat (the seconds-long CPU variants)."""
  c.model.preset, c.model.remat = "tiny", ""
  for key in SHAPE_KEYS:
    c.model[key] = 0
  return c


def cpu_mode(c: ml_collections.ConfigDict, *, num_steps: int, seq_len: int,
             warmup_steps: int) -> ml_collections.ConfigDict:
  """The small CPU variant every recipe offers (`NAME.py:cpu`): the tiny preset with none of the
  recipe's shape overrides (or the init checkpoint's own architecture and dtypes: `init.*` and
  `model.*dtype` / `remat` are left to the command line), batches of 8 from the main process on a
  data-only mesh, lr 3e-3, a checkpoint and an eval halfway and at the end."""
  tiny_model(c)
  c.model.param_dtype = c.model.compute_dtype = ""
  c.init.checkpoint = c.init.vision_dir = c.init.llm_dir = ""
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 1, 1
  c.data.seq_len = seq_len
  c.data.batch_size = 8
  c.data.workers = 0
  c.num_steps = num_steps
  c.optim.lr = 3e-3
  c.optim.warmup_steps = warmup_steps
  c.checkpoint.every_steps = c.eval.every_steps = num_steps // 2
  c.eval.batches = 2
  c.log.every_steps = 5
  return c


def load(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """`experiments/configs/NAME.py[:ARG]` plus `--config.KEY=VALUE` strings."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} not found; pass --config experiments/configs/NAME.py[:ARG]")
  module_spec = importlib.util.spec_from_file_location("lcbm_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UserError(f"{path} has no get_config(arg) function")
  config = module.get_config(arg or None)
  check_keys(config, path)
  for item in overrides:
    apply_override(config, item)
  return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for name, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      keys += flat_keys(value, f"{prefix}{name}.")
    else:
      keys.append(prefix + name)
  return keys


def _unknown(key: str, known: list[str]) -> UserError:
  close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
  hint = f"did you mean {', '.join(close)}?" if close else f"known keys: {', '.join(known)}"
  return UserError(f"unknown config key {key!r}; {hint}")


def check_keys(config: ml_collections.ConfigDict, where: str) -> None:
  """A config may only set keys of `base_config()`: a new key would be read by nothing."""
  known = flat_keys(base_config())
  for key in flat_keys(config):
    if key not in known:
      raise UserError(f"{where}: {_unknown(key, known)}")


def _parse(key: str, text: str, current: Any) -> Any:
  """`text` as the type of the key's current value (bool before int: bool is an int)."""
  def bad(expected: str) -> UserError:
    return UserError(f"--config.{key}={text}: expected {expected} (the current value is {current!r})")
  if isinstance(current, bool):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise bad("true or false")
  if isinstance(current, (int, float)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise bad(type(current).__name__) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(current, int) and not isinstance(value, int)):
      raise bad(type(current).__name__)
    return type(current)(value)
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = tuple(t for t in text.split(",") if t)   # a,b,c for lists of names
    if not isinstance(value, (tuple, list)):
      value = (value,)
    kinds = {type(v) for v in current}
    if current and not all(type(v) in kinds or (float in kinds and isinstance(v, int)) for v in value):
      raise bad(f"a list of {'/'.join(sorted(k.__name__ for k in kinds))}")
    return tuple(float(v) if float in kinds else v for v in value)
  raise bad(type(current).__name__)


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Applies one `--config.KEY=VALUE`, type-checked against the key's current value."""
  body = item[len("--config."):] if item.startswith("--config.") else item
  key, eq, text = body.partition("=")
  if not eq:
    raise UserError(f"override {item!r} must look like --config.KEY=VALUE")
  known = flat_keys(config)
  if key not in known:
    raise _unknown(key, known)
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = _parse(key, text, node[leaf])


class RecordingConfig:
  """Read-only view of a ConfigDict that records the full name of every leaf key read."""

  def __init__(self, config: ml_collections.ConfigDict, prefix: str = "", reads: set | None = None):
    object.__setattr__(self, "_config", config)
    object.__setattr__(self, "_prefix", prefix)
    object.__setattr__(self, "reads", set() if reads is None else reads)

  def __getattr__(self, name: str):
    value = getattr(self._config, name)
    if isinstance(value, ml_collections.ConfigDict):
      return RecordingConfig(value, f"{self._prefix}{name}.", self.reads)
    self.reads.add(self._prefix + name)
    return value

  __getitem__ = __getattr__

  def __setattr__(self, name, value):
    raise TypeError("configs are read-only inside the trainer")


def unwrap(config) -> ml_collections.ConfigDict:
  """The plain ConfigDict behind a `RecordingConfig` (for saving; reads nothing)."""
  return config._config if isinstance(config, RecordingConfig) else config
