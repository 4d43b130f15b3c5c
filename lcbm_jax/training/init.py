"""Where a run's weights start. The order, written down only here:

  1. resume   the run's own newest verified step (`<workdir>/checkpoints/`): state, data iterator,
              architecture and tokenizer all come from it; the init source is not even looked at, so a
              run resumes after its init checkpoint was moved away
  2. init     `init.checkpoint` (anything `--checkpoint` accepts, or a Hugging Face Hub id), or
              `init.vision_dir` + `init.llm_dir` (CLIP + Llama, a fresh projector): the weights, their
              architecture and their tokenizer (never a newly trained one)
  3. scratch  the preset's architecture, a random init, a tokenizer trained on the corpus

`plan(config, workdir)` decides before anything is compiled, since the architecture and the tokenizer
shape the compiled step; `Start.load_params(abstract)` then reads the init weights straight onto the
mesh, one parameter at a time (`checkpoint.place` over `export.hf.leaf_readers` for Hugging Face
directories, over `checkpoint.param_readers` for our own checkpoints). `Start.record()` is stored with the run's config in every checkpoint.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from lcbm_jax import artifacts, hub, paths
from lcbm_jax import checkpoint as ckpt_lib
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import lcbm, presets

RESUME, INIT, SCRATCH = "resume", "init", "scratch"


@dataclasses.dataclass
class Start:
  kind: str                                   # RESUME, INIT or SCRATCH
  model_cfg: presets.LCBMConfig | None        # None: the preset's (scratch)
  tokenizer: Any = None                       # the checkpoint's tokenizer; None: the run's own
  step: int = 0                               # the step a resume continues from
  source: dict = dataclasses.field(default_factory=dict)   # what the weights came from (recorded)
  _read: Callable[[Any], Any] | None = None   # abstract params with shardings -> params (INIT)

  def load_params(self, abstract_params):
    """The init weights placed as `abstract_params` says (shapes checked, dtypes cast to the run's)."""
    return self._read(abstract_params)

  @property
  def pretrained(self) -> bool:
    """Whether the weights (and so the architecture and tokenizer) came from a checkpoint, now or
    when the run was first started."""
    return self.kind == INIT or (self.kind == RESUME and self.source.get("kind") == INIT)

  def record(self) -> dict:
    """How the run began (a resume records what the first start recorded)."""
    return dict(self.source) if self.kind == RESUME else {"kind": self.kind, **self.source}


def _own_step(workdir: str) -> int | None:
  ckpt_dir = paths.path(workdir) / ckpt_lib.CHECKPOINTS
  if not ckpt_dir.is_dir():
    return None
  step, _ = ckpt_lib.find_latest_good_step_together(ckpt_dir)   # every process runs plan()
  return step


def plan(config, workdir: str) -> Start:
  """The start of a run in `workdir` under `config` (see the module doc for the order)."""
  step = _own_step(workdir)
  if step is not None:
    step_dir = paths.path(workdir) / ckpt_lib.CHECKPOINTS / str(step)
    model = ckpt_lib.read_json_item(step_dir, "model")
    try:
      saved = ckpt_lib.read_json_item(step_dir, "config")
    except (OSError, ValueError):
      saved = {}
    origin = saved.get("init_source") if isinstance(saved, dict) else None
    cfg = presets.LCBMConfig.from_dict(model) if model else None
    return Start(RESUME, cfg, None, step, dict(origin or {"kind": SCRATCH}))
  init = config.init
  if init.checkpoint and (init.vision_dir or init.llm_dir):
    raise UserError("set either init.checkpoint or init.vision_dir + init.llm_dir, not both")
  if init.checkpoint:
    return _from_checkpoint(config, hub.resolve(init.checkpoint, what="init.checkpoint"))
  if init.vision_dir or init.llm_dir:
    if not (init.vision_dir and init.llm_dir):
      raise UserError("init.vision_dir and init.llm_dir go together (a CLIP and a Llama directory)")
    return _from_clip_llama(config, hub.resolve(init.vision_dir, what="init.vision_dir"),
                            hub.resolve(init.llm_dir, what="init.llm_dir"))
  return Start(SCRATCH, None)


def _cast(x, dtype):
  return x if x.dtype == dtype else x.astype(dtype)


def _shardings_dtypes(abstract):
  return jax.tree.map(lambda a: a.sharding, abstract), jax.tree.map(lambda a: a.dtype, abstract)


def _from_checkpoint(config, path: str) -> Start:
  path = str(paths.path(path))
  source = {"checkpoint": config.init.checkpoint, "path": path}
  if not paths.is_remote(path) and hf.is_hf_dir(path):
    cfg, files, tokenizer = hf.open_llava(path)

    def read(abstract):
      return ckpt_lib.place(hf.leaf_readers(cfg, files), *_shardings_dtypes(abstract))
    return Start(INIT, cfg, tokenizer, source={**source, "format": "huggingface"}, _read=read)
  if not paths.path(path).is_dir():
    raise UserError(f"init.checkpoint {path} is not a model: expected a Hugging Face LLaVA directory "
                    "(config.json + *.safetensors), a params-only import (lcbm import-hf --out), or a run's "
                    "workdir or step")
  try:
    step_dir = artifacts.resolve_step_dir(path)
  except UserError as e:
    raise UserError(f"init.checkpoint {path} is not a model: {e}") from None
  cfg = artifacts.model_config(step_dir)

  def read(abstract):
    stored = jax.tree.map(lambda a, d: jax.ShapeDtypeStruct(a.shape, d), abstract, _stored_dtypes(cfg, abstract))
    return ckpt_lib.place(ckpt_lib.param_readers(step_dir, stored), *_shardings_dtypes(abstract))
  return Start(INIT, cfg, artifacts.step_tokenizer(step_dir),
               source={**source, "format": "lcbm", "step_dir": str(step_dir)}, _read=read)


def _stored_dtypes(cfg: presets.LCBMConfig, abstract):
  """The dtypes the checkpoint holds (its own param_dtype), checked against its metadata before reading."""
  stored = lcbm.abstract_params(cfg)
  return jax.tree.map(lambda s: s.dtype, stored)


def _from_clip_llama(config, vision_dir: str, llm_dir: str) -> Start:
  pair = hf.ClipLlama(vision_dir, llm_dir)

  def read(abstract):
    shardings, dtypes = _shardings_dtypes(abstract)
    params = ckpt_lib.place(pair.readers(), shardings, dtypes)
    # The fresh projector is the one a scratch run with this seed would draw.
    fresh = jax.tree.map(_cast, hf.projector_init(pair.cfg, config.seed), dtypes["projector"])
    params["projector"] = jax.device_put(fresh, shardings["projector"])
    return params
  return Start(INIT, pair.cfg, pair.tokenizer,
               source={"vision_dir": vision_dir, "llm_dir": llm_dir, "format": "clip+llama",
                       "fresh": ["projector"]}, _read=read)
