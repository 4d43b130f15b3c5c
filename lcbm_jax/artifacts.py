"""Open anything `--checkpoint` accepts (eval, predict, score, export-hf, the experiments):

  a training workdir, or its checkpoints/   the newest committed and verified step
                                            (`checkpoint.find_latest_good_step`; bad newer steps are warned about)
  one step's directory                      verified as it is (`checkpoint.check_step`)
  a params-only checkpoint                  `checkpoint.save_params` (what `lcbm import-hf --out` writes)
  a Hugging Face LLaVA directory            `export.hf.load_llava` (what `lcbm export-hf --out` writes)
"""
from __future__ import annotations

import logging
import pathlib

import jax

from data_pipeline import tokenizer as tokenizer_lib
from lcbm_jax import checkpoint as ckpt_lib
from lcbm_jax import paths, sharding
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import lcbm, presets

log = logging.getLogger(__name__)


def resolve_step_dir(path) -> pathlib.Path:
  """A training workdir, its checkpoints/ directory, or one step's directory (local or gs://) -> a
  verified step dir (a `pathlib.Path`, or an `epath.Path` for gs://)."""
  return paths.native(_resolve_step_dir(paths.path(path)))   # absolute: Orbax requires it


def _resolve_step_dir(path):
  if (path / ckpt_lib.STEP_METADATA).is_file() or (path / ckpt_lib.MANIFEST).is_file():
    problem = ckpt_lib.check_step(path)
    if problem:
      raise UserError(f"checkpoint {path} is damaged: {problem}")
    return path
  ckpt_dir = path / ckpt_lib.CHECKPOINTS if (path / ckpt_lib.CHECKPOINTS).is_dir() else path
  steps = ckpt_lib.list_steps(ckpt_dir)
  if not steps:
    raise UserError(f"no checkpoint found at {path}: expected a training workdir (with {ckpt_lib.CHECKPOINTS}/), "
                    "one step's directory, or a Hugging Face directory (config.json + *.safetensors)")
  step, bad = ckpt_lib.find_latest_good_step(ckpt_dir)
  for s, problem in sorted(bad.items(), reverse=True):
    log.warning("checkpoint: skipping step %d: %s", s, problem)
  if step is None:
    raise UserError(f"no good checkpoint in {ckpt_dir}: steps {steps} all fail verification "
                    f"(newest: {bad[steps[-1]]})")
  return ckpt_dir / str(step)


def param_shardings(cfg: presets.LCBMConfig, params_shape, mesh: jax.sharding.Mesh | None):
  """The model's parameter shardings on `mesh`, or everything on the default device when None."""
  if mesh is not None:
    return sharding.param_shardings(cfg, mesh)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda _: device, params_shape)


def load_for_inference(path, *, mesh: jax.sharding.Mesh | None = None):
  """(cfg, params, tokenizer) from a training workdir (latest good step), one step's directory, a
  params-only checkpoint, or an exported Hugging Face LLaVA directory (via `export.hf`).

  Params land on `mesh` with the model's parameter shardings when given, else on the default device.
  tokenizer is what `data_pipeline.tokenizer.load` returns, or None when the checkpoint has none.
  """
  path = paths.path(path)
  if not path.exists():
    raise UserError(f"checkpoint path {path} does not exist")
  if not paths.is_remote(path) and hf.is_hf_dir(str(path)):
    cfg, files, tokenizer = hf.open_llava(str(path))
    params = hf.place_params(cfg, files, param_shardings(cfg, lcbm.abstract_params(cfg), mesh))
    return cfg, params, tokenizer
  step_dir = resolve_step_dir(path)
  cfg = model_config(step_dir)
  expected = lcbm.abstract_params(cfg)
  shardings = param_shardings(cfg, expected, mesh)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), expected, shardings)
  params = ckpt_lib.restore_params(step_dir, abstract)
  return cfg, params, step_tokenizer(step_dir)


def model_config(step_dir) -> presets.LCBMConfig:
  """The model config a verified step stores, validated (a manifest proves the bytes, not that they are sane)."""
  where = paths.path(step_dir) / "model" / "metadata"
  try:
    model_dict = ckpt_lib.read_json_item(step_dir, "model")
  except (OSError, ValueError, RecursionError) as e:
    raise UserError(f"cannot read the model config {where} ({type(e).__name__}: {str(e)[:200]})") from None
  if not model_dict:
    raise UserError(f"{where} holds no model config (the run saved without model_cfg)")
  return presets.LCBMConfig.from_dict(model_dict)


def step_tokenizer(step_dir):
  """The tokenizer a checkpoint carries (`data_pipeline.tokenizer.load`), or None."""
  tokenizer_dir = paths.path(step_dir) / "tokenizer"
  if not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
    return None
  if paths.is_remote(tokenizer_dir):   # the tokenizer libraries read local files: a local copy first
    local = paths.cache_root() / "tokenizers" / paths.cache_key(str(tokenizer_dir))
    local.mkdir(parents=True, exist_ok=True)
    for p in tokenizer_dir.iterdir():
      (local / p.name).write_bytes(p.read_bytes())
    tokenizer_dir = local
  return tokenizer_lib.load(paths.native(tokenizer_dir))


def training_config(path) -> dict:
  """The training config saved with the step `path` resolves to (as `load_for_inference` resolves it);
  {} for a Hugging Face directory, or a checkpoint saved without one."""
  if hf.is_hf_dir(str(path)):
    return {}
  step_dir = resolve_step_dir(path)
  try:
    config = ckpt_lib.read_json_item(step_dir, "config")
  except (OSError, ValueError):
    return {}
  return config if isinstance(config, dict) else {}


def conversation(path) -> str:
  """The prompt format (`data.conversation`) the model at `path` was trained with; "plain" for a
  Hugging Face directory or a checkpoint that records none (prompts are then given as they are)."""
  data = training_config(path).get("data") or {}
  value = data.get("conversation", "plain") if isinstance(data, dict) else "plain"
  return value if isinstance(value, str) and value else "plain"
