"""The training loop: one `train()` to read top to bottom (`lcbm train` is lcbm_jax/cli/train.py).

  mesh -> model -> data -> optimizer -> shardings -> ahead-of-time compile -> restore or init
  -> loop (step, log, eval, checkpoint, preemption) -> final eval, checkpoint, plot

Everything the loop does is a function of (config, step): the step key is fold_in(seed key, step)
and the data iterator's state is checkpointed, so a resumed run repeats an uninterrupted one.

  lcbm train --config experiments/configs/demo.py:small --workdir /tmp/run --config.num_steps=20
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from data_pipeline import batch as batch_lib
from data_pipeline import pipeline, vocab
from data_pipeline.batch import STEP_KEYS
from lcbm_jax import checkpoint as ckpt_lib
from lcbm_jax import paths, sharding
from lcbm_jax.errors import UserError
from lcbm_jax.export import hf
from lcbm_jax.model import lcbm, presets
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import metrics as metrics_lib
from lcbm_jax.training import init as init_lib
from lcbm_jax.training import optim, preemption, processes
from lcbm_jax.training import step as step_lib
from lcbm_jax.training.state import TrainState

# What a run has consumed, over all processes: non-padding input tokens, loss (target) tokens, images
# read by rows. Checkpointed with the data iterator, so a resumed run's totals equal an uninterrupted one's.
_NO_SEEN = {"tokens": 0, "loss_tokens": 0, "images": 0}


def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
  """jax.distributed.initialize from flags, else environment, else TPU-pod auto-detection.

  Must run before anything touches a JAX device. CPU processes talk over gloo. A rank lost later
  ends every other one with one line (lcbm_jax/training/processes.py).
  """
  coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if coordinator:
    if num_processes is None or process_id is None:
      raise UserError("a coordinator address needs --num-processes and --process-id "
                      "(or JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    processes.initialize(coordinator, num_processes, process_id)
  elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    processes.initialize()   # multi-host TPU VM: everything comes from the TPU metadata


def _with_shardings(abstract, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def _print_memory(compiled, name: str) -> None:
  """The compiled step's memory plan, before any state is allocated (fail early, not at step 1)."""
  mem = compiled.memory_analysis()
  if mem is None:
    print(f"{name}: no memory analysis on this backend", file=sys.stderr)
    return
  gib = lambda b: f"{b / 2**30:.3f} GiB"
  print(f"{name} per device: arguments {gib(mem.argument_size_in_bytes)}, outputs "
        f"{gib(mem.output_size_in_bytes)}, temporaries {gib(mem.temp_size_in_bytes)}, "
        f"code {gib(mem.generated_code_size_in_bytes)}", file=sys.stderr)


def image_groups(config, mesh) -> int:
  """Groups the batch's images split into: one per data shard of every micro-batch, so each shard's
  vision tower encodes the images of its own rows."""
  return mesh.shape["data"] * mesh.shape["fsdp"] * config.optim.grad_accum


def image_budget(config, model_cfg) -> int:
  """Images per batch over all processes (`data.images_per_batch`; 0 = room for every row's maximum)."""
  return config.data.images_per_batch or config.data.batch_size * model_cfg.max_images


def batch_spec(config, model_cfg, mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """Global shapes of the batch keys the step reads (`data_pipeline.batch`, docs/contracts.md §5)."""
  groups = image_groups(config, mesh)
  budget = image_budget(config, model_cfg)
  if budget % groups:
    raise UserError(f"data.images_per_batch={budget} does not split over the {groups} data shards (data x fsdp x "
                    f"optim.grad_accum); use a multiple of {groups}")
  spec = batch_lib.batch_spec(config.data.batch_size, config.data.seq_len, groups, budget // groups,
                              model_cfg.vision.image_size, segments=1)   # sample_ids stay on the host
  return {k: jax.ShapeDtypeStruct(*spec[k]) for k in STEP_KEYS}


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
  """The ahead-of-time compiled pieces of a run on one mesh."""
  train_step: Any        # (state, batch, rng) -> (state, metrics); donates the state
  eval_step: Any         # (params, batch, rng) -> loss sums (jitted, compiled at first use)
  init: Any              # rng -> TrainState, created already sharded
  create: Any            # params -> TrainState (fresh optimizer state), for weights from a checkpoint
  abstract_state: TrainState
  state_shardings: TrainState
  batch_sharding: jax.sharding.NamedSharding
  trainable: Any         # bool pytree like params


def state_init(config, model_cfg):
  """The run's optimizer and `init_state(rng) -> TrainState` (fresh parameters and optimizer state).

  `jax.eval_shape(init_state, rng)` is the abstract state, the shapes and dtypes the shardings, the
  compile and a restore start from, without allocating: tests/test_recipes.py runs it at 7B.
  """
  tx = optim.make_optimizer(config.optim, lcbm.abstract_params(model_cfg), config.num_steps)

  def init_state(init_rng):
    params = lcbm.init_params(model_cfg, init_rng)
    return TrainState.create(params, tx.init(params))

  return tx, init_state


def compile_steps(config, model_cfg, mesh, *, compile: bool = True) -> CompiledSteps:
  """Abstract shapes -> shardings -> jit with explicit in/out shardings -> lower -> compile.

  compile=False leaves `train_step` lowered, not compiled (`jax.stages.Lowered`): its
  `cost_analysis()` counts the step's FLOPs in about a second, without XLA's optimisation passes."""
  tasks = tuple(config.data.tasks)
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.data.batch_size % (dp * config.optim.grad_accum):
    raise UserError(f"data.batch_size ({config.data.batch_size}) must be a multiple of the data x fsdp mesh "
                    f"size ({dp}) times optim.grad_accum ({config.optim.grad_accum})")
  model = lcbm.LCBM(model_cfg)
  abstract_params = lcbm.abstract_params(model_cfg)
  tx, init_state = state_init(config, model_cfg)
  trainable = optim.trainable_mask(abstract_params, tuple(config.optim.freeze))
  schedule = optim.make_schedule(config.optim, config.num_steps)

  def apply_fn(params, batch, step_rng):
    del step_rng   # the model has no dropout; the key is threaded for objectives that sample
    return model.apply({"params": params}, batch["input_ids"], batch["images"], batch["segment_ids"],
                       batch["positions"], image_index=batch["image_index"])

  rng = jax.random.key(config.seed)
  abstract_state = jax.eval_shape(init_state, rng)
  state_sh = sharding.tree_shardings(abstract_state, model_cfg, mesh)
  batch_sh = sharding.batch_sharding(mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  abstract_batch = {k: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sh)
                    for k, x in batch_spec(config, model_cfg, mesh).items()}
  train_step = step_lib.make_train_step(apply_fn, tx, trainable, schedule, len(tasks), config.optim.grad_accum,
                                        model_cfg.num_image_tokens)
  eval_step = step_lib.make_eval_step(apply_fn, len(tasks))
  compiled_train = jax.jit(
      train_step, in_shardings=(state_sh, batch_sh, replicated), out_shardings=(state_sh, replicated),
      donate_argnums=0).lower(_with_shardings(abstract_state, state_sh), abstract_batch, rng)
  if compile:
    compiled_train = compiled_train.compile()
  # The eval step compiles at its first use: runs and tests that never evaluate skip that compile.
  jitted_eval = jax.jit(eval_step, in_shardings=(state_sh.params, batch_sh, replicated), out_shardings=replicated)
  create = jax.jit(lambda params: TrainState.create(params, tx.init(params)), in_shardings=(state_sh.params,),
                   out_shardings=state_sh, donate_argnums=0)
  return CompiledSteps(compiled_train, jitted_eval, jax.jit(init_state, out_shardings=state_sh), create,
                       abstract_state, state_sh, batch_sh, trainable)



def _scalars(prefix: str, m: dict, tasks) -> dict:
  out = {f"{prefix}/loss": m["loss"]}
  for t, name in enumerate(tasks):
    if m["task_tokens"][t] > 0:
      out[f"{prefix}/loss_{name}"] = m["task_loss"][t]
  return out


def pipeline_config(config, model_cfg, tokenizer_dir: str, mesh=None) -> pipeline.PipelineConfig:
  """This process's share of the data `config` names, shaped for `model_cfg`: its image size, images
  per sample, tokens per image and image preprocessing (the values predict and export use), and the
  image budget split over `mesh`'s data shards (None: one group per process)."""
  if len(config.data.weights) != len(config.data.tasks):
    raise UserError(f"data.weights has {len(config.data.weights)} entries for {len(config.data.tasks)} "
                    "data.tasks; give one weight per task")
  return pipeline.PipelineConfig(
      data_dir=paths.local_data_dir(config.data.dir), tokenizer=tokenizer_dir,
      tasks=tuple(zip(config.data.tasks, config.data.weights)), seq_len=config.data.seq_len,
      content_only=config.data.content_only, conversation=config.data.conversation, mixture=config.data.mixture,
      kbft_k=config.data.kbft_k,
      batch_size=config.data.batch_size, image_size=model_cfg.vision.image_size,
      image_mean=model_cfg.image_mean, image_std=model_cfg.image_std,
      image_shortest_edge=model_cfg.image_shortest_edge, image_resample=model_cfg.image_resample,
      image_pad_to_square=model_cfg.image_pad_to_square,
      max_images=model_cfg.max_images, num_image_tokens=model_cfg.num_image_tokens, seed=config.seed,
      images_per_batch=image_budget(config, model_cfg),
      image_groups=image_groups(config, mesh) if mesh is not None else 0,
      worker_count=config.data.workers, process_index=jax.process_index(),
      process_count=jax.process_count())


class _Data:
  """The run's data: the resumable train iterator, held-out eval batches, and the tokenizer."""

  def __init__(self, config, model_cfg, files_dir: str, mesh, pretrained_tokenizer=None, workdir: str | None = None):
    self.tokenizer_dir = _tokenizer_dir(config, model_cfg, files_dir, pretrained_tokenizer, workdir or files_dir)
    base = pipeline_config(config, model_cfg, self.tokenizer_dir, mesh)
    self.train = pipeline.make_iterator(dataclasses.replace(base, num_epochs=None))
    # Held-out splits are read as they are (no by_weight resampling): the loss is the data's.
    self._eval = [pipeline.make_iterator(dataclasses.replace(base, split=split, worker_count=0,
                                                             mixture="per_record"))
                  for split in config.eval.splits]

  def eval_batches(self, per_split: int):
    """The first `per_split` batches of each held-out split, the same ones at every eval."""
    for it in self._eval:
      it.set_state(None)
      for _, batch in zip(range(per_split), it):
        yield batch


def _tokenizer_dir(config, model_cfg, workdir: str, pretrained=None, remote: str | None = None) -> str:
  """The pretrained model's tokenizer, else data.tokenizer, else the run's own one (trained once on the
  train split); the first and the last are kept in the workdir, so a resume finds them there."""
  if pretrained is not None and config.data.tokenizer:
    raise UserError("data.tokenizer is set, but the init checkpoint brings its own tokenizer (the one its "
                    "weights were trained with); drop data.tokenizer")
  if config.data.tokenizer:
    return config.data.tokenizer
  out = os.path.join(workdir, "tokenizer")
  have = any(os.path.exists(os.path.join(out, n)) for n in ("tokenizer.model", "tokenizer.json"))
  if pretrained is not None:
    if jax.process_index() == 0 and not have:
      pretrained.save(out)
  elif jax.process_index() == 0 and not have:
    vocab.train_corpus_tokenizer(pipeline.Corpus(paths.local_data_dir(config.data.dir), "train"), config.data.tasks,
                                 vocab_size=model_cfg.text.vocab_size, max_images=model_cfg.max_images,
                                 seed=config.seed, out_dir=out)
  if remote is not None and paths.is_remote(remote) and jax.process_index() == 0:
    paths.upload(workdir, remote)   # the other hosts read it from there
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("lcbm tokenizer")
    if remote is not None and paths.is_remote(remote) and jax.process_index() != 0:
      paths.mirror_dir(remote)   # fetches what process 0 wrote into this host's mirror
  return out


def model_config(config):
  """The preset named by model.preset with all of the config's model overrides applied."""
  return apply_overrides(config, presets.get(config.model.preset))


def apply_overrides(config, cfg, *, shapes: bool = True):
  """`cfg` (an LCBMConfig) with the config's non-empty `model.*` overrides applied.

  How it computes: model.param_dtype, model.compute_dtype and model.remat ("" keeps `cfg`'s), always.
  What it is: model.vocab_size, hidden_size, intermediate_size, num_layers and image_size (0 keeps
  `cfg`'s), only with `shapes=True`, for a preset. An architecture read from a checkpoint passes
  `shapes=False`: its shapes come with its weights, so a non-zero shape key there is a UserError that
  names it, not a value silently ignored.
  """
  m = config.model
  text = {field: m[key] for key, field in (("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"),
                                           ("intermediate_size", "intermediate_size"),
                                           ("num_layers", "num_hidden_layers")) if m[key]}
  image_size = m.image_size
  if not shapes and (text or image_size):
    named = [f"model.{k}={m[k]}" for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                          "image_size") if m[k]]
    raise UserError(f"{', '.join(named)} would change the architecture of the init checkpoint, whose shapes "
                    "come with its weights; leave the model shape keys at 0")
  if text:
    # head_dim follows the width unless the preset pins it.
    head_dim = None if "hidden_size" in text else cfg.text.head_dim
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, head_dim=head_dim, **text))
  if image_size:
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=image_size))
  how = {}
  for key, field, allowed in (("param_dtype", "param_dtype", presets.DTYPES),
                              ("compute_dtype", "compute_dtype", presets.DTYPES),
                              ("remat", "remat_policy", presets.REMAT_POLICIES)):
    if m[key] and m[key] not in allowed:
      raise UserError(f"model.{key}={m[key]!r} is not one of {', '.join(allowed)} "
                      "('' keeps the preset's or the checkpoint's)")
    if m[key]:
      how[field] = m[key]
  return dataclasses.replace(cfg, **how)


def _fit_tokenizer(model_cfg, tokenizer):
  """The preset with the tokenizer's `<image>` id; its vocabulary must fit the embedding table."""
  if tokenizer.vocab_size > model_cfg.text.vocab_size:
    raise UserError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
                    f"{model_cfg.text.vocab_size}; use a larger preset or a smaller tokenizer")
  return dataclasses.replace(model_cfg, image_token_id=tokenizer.image_id)


def _describe(start: init_lib.Start) -> str:
  if start.kind == init_lib.RESUME:
    return f"step {start.step}, first started from {start.source.get('kind', 'scratch')}"
  if start.kind == init_lib.INIT:
    where = start.source.get("path") or f"{start.source['vision_dir']} + {start.source['llm_dir']}"
    return f"{start.source['format']} weights from {where}"
  return "random init"


def check_finite(m: dict, limit: int, step: int) -> None:
  """Stops the run once `limit` steps in a row had a non-finite loss or gradient."""
  if m["nonfinite_in_row"] >= limit:
    raise UserError(f"{int(m['nonfinite_in_row'])} non-finite steps in a row (the last at step {step}, "
                    f"{int(m['nonfinite_total'])} in the run); the parameters are those from before them. "
                    "Lower optim.lr or raise optim.warmup_steps, or look for extreme values in the data")


def train(config, workdir: str) -> dict:
  """Trains as `config` says into `workdir`; returns a summary (final losses, throughput, paths)."""
  with processes.exit_if_peer_lost():   # a lost rank ends a multi-process run with one line
    return _train(config, workdir)


def _train(config, workdir: str) -> dict:
  paths.path(workdir).mkdir(parents=True, exist_ok=True)
  # The run's own small files (metrics, tokenizer, summary): the workdir, or for gs:// a local mirror
  # copied up after every checkpoint (lcbm_jax/paths.py); checkpoints go straight to the workdir.
  files_dir = paths.mirror_dir(workdir)
  is_main = jax.process_index() == 0
  say = (lambda *a: print(*a, file=sys.stderr)) if is_main else (lambda *a: None)
  num_steps = config.num_steps
  tasks = tuple(config.data.tasks)

  # Where the weights start (resume -> init checkpoint -> scratch), which fixes the architecture.
  mesh = sharding.make_mesh(data=config.mesh.data, fsdp=config.mesh.fsdp, tensor=config.mesh.tensor)
  if not config.data.dir:
    raise UserError("data.dir is empty; build data with `lcbm data build` and pass --config.data.dir=DIR")
  start = init_lib.plan(config, workdir)
  if start.pretrained and start.model_cfg is not None:
    model_cfg = apply_overrides(config, start.model_cfg, shapes=False)   # the checkpoint's architecture
    where = start.source.get("path") or start.source.get("llm_dir") or workdir
    if start.kind == init_lib.INIT and start.tokenizer is None and not config.data.tokenizer:
      raise UserError(f"init checkpoint {where} has no tokenizer; pass the one its weights were trained with "
                      "as --config.data.tokenizer=DIR")
  else:
    model_cfg = model_config(config)
  say(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices, {jax.process_count()} process(es); "
      f"start: {start.kind} ({_describe(start)})")

  # Data: this process's share of every global batch, plus a held-out stream for eval.
  data = _Data(config, model_cfg, files_dir, mesh, start.tokenizer, workdir)
  if start.pretrained:
    hf.check_tokenizer(model_cfg, data.train.tokenizer, "data")
  else:
    model_cfg = _fit_tokenizer(model_cfg, data.train.tokenizer)

  # Optimizer, abstract state and shardings, then an ahead-of-time compile: fail before allocating.
  rng = jax.random.key(config.seed)
  steps = compile_steps(config, model_cfg, mesh)
  if is_main:
    _print_memory(steps.train_step, "train_step")
  trainable, abstract_params = steps.trainable, steps.abstract_state.params

  def to_global(local_batch: dict) -> dict:
    return sharding.make_global({k: local_batch[k] for k in STEP_KEYS}, mesh, steps.batch_sharding)

  # The state: restored (resume), created from the init weights on the mesh, or drawn at random.
  ckpt = ckpt_lib.CheckpointManager(workdir, keep_last=config.checkpoint.keep,
                                    keep_every=config.checkpoint.keep_every)
  resume_step = ckpt.latest_good_step()
  if resume_step is not None:
    state, data_state = ckpt.restore(resume_step, _with_shardings(steps.abstract_state, steps.state_shardings))
    data.train.set_state(data_state)
    # A checkpoint written before the totals existed resumes them from 0 (and says so in the summary).
    seen = ckpt_lib.read_seen(ckpt.directory / str(resume_step)) or {**_NO_SEEN, "incomplete": True}
    say(f"resumed from step {resume_step} ({ckpt.directory / str(resume_step)})")
  elif start.kind == init_lib.INIT:
    state = steps.create(start.load_params(_with_shardings(abstract_params, steps.state_shardings.params)))
  else:
    state = steps.init(rng)
  if resume_step is None:
    seen = dict(_NO_SEEN)
  start_step = resume_step or 0
  run_config = {**config_lib.unwrap(config).to_dict(), "init_source": start.record()}

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params))
  n_train = sum(int(np.prod(x.shape)) for x, t in zip(jax.tree.leaves(abstract_params),
                                                       jax.tree.leaves(trainable)) if t)
  peak = metrics_lib.peak_flops_per_device(config.log.peak_flops) * jax.device_count()
  say(f"{n_params / 1e6:.2f}M parameters, {n_train / 1e6:.2f}M trained; peak {peak / 1e9:.1f} GFLOP/s "
      f"over all devices")
  writer = metrics_lib.MetricsWriter(files_dir, run_config, config.log.wandb)

  def save(step: int) -> None:
    ckpt.save(step, state, data.train.get_state(), run_config, data.tokenizer_dir, model_cfg=model_cfg, seen=seen)
    if is_main:
      paths.upload(files_dir, workdir)

  def evaluate(step: int) -> dict:
    sums = None
    for local in data.eval_batches(config.eval.batches):
      out = jax.device_get(steps.eval_step(state.params, to_global(local), rng))
      sums = out if sums is None else jax.tree.map(np.add, sums, out)
    m = {"loss": sums["nll"] / max(sums["tokens"], 1.0), "task_tokens": sums["task_tokens"],
         "task_loss": sums["task_nll"] / np.maximum(sums["task_tokens"], 1.0)}
    writer.write(step, _scalars("eval", m, tasks))
    return m

  watcher = preemption.PreemptionWatcher()
  bar = tqdm.tqdm(total=num_steps, initial=start_step, desc="train", disable=not is_main, file=sys.stderr,
                  dynamic_ncols=True)
  last_eval, last = None, None
  window_start, window_tokens, window_flops, window_images, window_steps = time.perf_counter(), 0, 0.0, 0, 0
  budget = image_budget(config, model_cfg)
  step = start_step
  try:
    while step < num_steps:
      state, m = steps.train_step(state, to_global(next(data.train)), rng)
      m = jax.device_get(m)
      step += 1
      bar.update(1)
      check_finite(m, config.max_nonfinite_in_row, step)
      window_tokens += int(m["tokens"])
      seen["tokens"] += int(m["tokens"])
      seen["loss_tokens"] += int(m["target_tokens"])
      seen["images"] += int(m["images"])
      window_steps += 1
      window_images += int(m["images"])
      window_flops += metrics_lib.flops_per_step(abstract_params, trainable, int(m["tokens"]),
                                                 config.data.seq_len, int(m["images"]))
      if step % config.log.every_steps == 0 or step == num_steps:
        elapsed = time.perf_counter() - window_start
        # MFU counts the images rows read, not the budget's empty slots the tower also encodes.
        perf = {"perf/tokens_per_s": window_tokens / elapsed, "perf/mfu": window_flops / elapsed / peak,
                "perf/flops_per_s": window_flops / elapsed,
                "perf/image_fill": window_images / max(budget * window_steps, 1)}
        last = {**_scalars("train", m, tasks), "train/grad_norm": m["grad_norm"],
                "train/update_norm": m["update_norm"], "train/param_norm": m["param_norm"],
                "train/lr": m["lr"], "train/nonfinite_total": m["nonfinite_total"], **perf}
        writer.write(step, last)
        bar.set_postfix(loss=f"{m['loss']:.3f}", tok_s=f"{perf['perf/tokens_per_s']:.0f}",
                        mfu=f"{100 * perf['perf/mfu']:.1f}%", img_fill=f"{100 * perf['perf/image_fill']:.0f}%")
        window_start, window_tokens, window_flops, window_images, window_steps = time.perf_counter(), 0, 0.0, 0, 0
      if config.eval.every_steps and step % config.eval.every_steps == 0 and step < num_steps:
        last_eval = evaluate(step)
        bar.write(f"step {step}: eval loss {last_eval['loss']:.4f}", file=sys.stderr)
        window_start = time.perf_counter()   # throughput counts training only
      ckpt.raise_if_save_failed()   # a background save that failed stops the run now, not at the next save
      if step % config.checkpoint.every_steps == 0 and step < num_steps:
        save(step)
        window_start = time.perf_counter()
      if watcher.requested(step):
        save(step)
        ckpt.wait_until_finished()
        say(f"preempted: saved step {step} to {ckpt.directory / str(step)}; rerun the same command to resume")
        return {"step": step, "preempted": True, "workdir": workdir, "seen": seen}
    if start_step < num_steps:
      save(num_steps)
    last_eval = evaluate(num_steps)
  finally:
    bar.close()
    watcher.close()
    writer.close()
    ckpt.close()   # waits for the last save and its manifest
  summary = {"step": step, "preempted": False, "workdir": workdir, "eval_loss": float(last_eval["loss"]),
             "checkpoint": str(ckpt.directory / str(num_steps)), "seen": seen}
  say(f"seen: {seen['tokens']:,} input tokens, {seen['loss_tokens']:,} loss tokens, {seen['images']:,} images"
      + (" (since a resume from a checkpoint without totals)" if seen.get("incomplete") else ""))
  if jax.process_count() > 1:   # one line from every host: its own shard, and the batches it fed (equal on all)
    print(f"process {jax.process_index()} of {jax.process_count()}: {data.train.batches} train batches from its "
          f"shard of {data.train.epoch_size} records", file=sys.stderr)
  if last is not None:
    summary.update(train_loss=float(last["train/loss"]), tokens_per_s=float(last["perf/tokens_per_s"]),
                   mfu=float(last["perf/mfu"]), peak_flops=peak)
  if is_main:
    summary["plot"] = metrics_lib.plot(writer.path, os.path.join(files_dir, "metrics.png"))
    with open(os.path.join(files_dir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
    paths.upload(files_dir, workdir)
    if paths.is_remote(workdir):
      summary["plot"] = f"{workdir.rstrip('/')}/metrics.png"
  return summary
