"""The recipes (experiments/configs/) as their docstrings run them: every `lcbm train` command there is
loaded with its overrides and checked at its real size, without running it.

A 7B command cannot run here, so its config goes as far as it can without allocating: the
llava-1.5-7b preset with the command's dtype and remat overrides, the optimizer, `jax.eval_shape` of
the train state (exactly the parameter count of llava-hf/llava-1.5-7b-hf), its shardings on a mesh of
the size the command names (from 8 simulated CPU devices), and the batch split. A command's device
count is the last "N chips" or "N GPUs" in the docstring text before it. The `:cpu` commands are the
CI miniatures: tiny preset, init keys from the command line, 8 simulated devices.
"""
import ast
import os
import re
import shlex

import jax
import numpy as np
import pytest

from data_pipeline import verbalize
from lcbm_jax import sharding
from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import optim, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("llava_stage1.py", "llava_stage2.py", "behavior_llava.py", "lcbm.py")
LLAVA_7B_PARAMS = 7_063_427_072     # LlavaForConditionalGeneration llava-hf/llava-1.5-7b-hf
PROJECTOR_7B = 1024 * 4096 + 4096 + 4096 * 4096 + 4096   # CLIP-L width -> Vicuna width -> Vicuna width
STATE_BYTES_PER_DEVICE = 40 * 2**30   # half of the smallest accelerator the docstrings name (80 GB)


def docstring_commands(name: str) -> list[tuple[int | None, str, list[str]]]:
  """(devices, `--config` spec, `--config.KEY=VALUE` overrides) of each `lcbm train` in `name`'s docstring."""
  path = os.path.join(REPO, "experiments", "configs", name)
  doc = re.sub(r"\\\n\s*", " ", ast.get_docstring(ast.parse(open(path).read())))   # join continuations
  out = []
  for match in re.finditer(r"^\s*lcbm train (.*)$", doc, re.M):
    counts = re.findall(r"(\d+) (?:chips|GPUs)", doc[:match.start()])
    argv = shlex.split(match[1])
    spec = argv[argv.index("--config") + 1]
    assert "--workdir" in argv, match[0]
    overrides = [a for a in argv if a.startswith("--config.")]
    assert len(overrides) + 4 == len(argv), f"{name}: unexpected arguments in {match[0]!r}"
    out.append((int(counts[-1]) if counts else None, spec, overrides))
  return out


COMMANDS = [(name, *cmd) for name in RECIPES for cmd in docstring_commands(name)]
BIG = [c for c in COMMANDS if not c[2].endswith(":cpu")]
CPU = [c for c in COMMANDS if c[2].endswith(":cpu")]


def _load(spec: str, overrides):
  return config_lib.load(os.path.join(REPO, spec), overrides)


def _mesh(config, devices: int):
  return sharding.make_mesh(data=config.mesh.data, fsdp=config.mesh.fsdp, tensor=config.mesh.tensor,
                            devices=jax.devices()[:devices])


def _check_init(config):
  """Exactly one of the two init forms is set, as the trainer's init order expects."""
  pair = bool(config.init.vision_dir), bool(config.init.llm_dir)
  assert bool(config.init.checkpoint) != any(pair) and pair[0] == pair[1], config.init


def _check_pipeline(config, model_cfg):
  """The data settings pass the pipeline's build-time checks (known tasks, images fit a row)."""
  train.pipeline_config(config, model_cfg, "tokenizer-of-the-init-checkpoint").validate()


def test_every_recipe_has_a_tpu_a_gpu_and_a_cpu_command():
  for name in RECIPES:
    cmds = docstring_commands(name)
    specs = [spec for _, spec, _ in cmds]
    assert specs.count(f"experiments/configs/{name}") == 2 and specs.count(f"experiments/configs/{name}:cpu") == 1
    assert sorted(n for n, spec, _ in cmds if not spec.endswith(":cpu")) == [4, 8], cmds


@pytest.mark.parametrize("name,devices,spec,overrides", BIG, ids=[f"{c[0]}-{c[1]}dev" for c in BIG])
def test_7b_command_builds_the_llava_1_5_7b_train_state(name, devices, spec, overrides):
  config = _load(spec, overrides)
  assert config.model.preset == "llava-1.5-7b" and config.data.dir and config.data.seq_len == 2048
  _check_init(config)
  model_cfg = train.model_config(config)
  # Float32 master weights (a 2e-5 Adam step vanishes in bfloat16), bfloat16 compute, full remat.
  assert (model_cfg.param_dtype, model_cfg.compute_dtype, model_cfg.remat_policy) == ("float32", "bfloat16", "full")
  _check_pipeline(config, model_cfg)

  mesh = _mesh(config, devices)
  assert mesh.size == devices
  dp = mesh.shape["data"] * mesh.shape["fsdp"]
  assert config.data.batch_size % (dp * config.optim.grad_accum) == 0
  micro = config.data.batch_size // (dp * config.optim.grad_accum)
  assert micro <= 16, f"{micro} rows of 2048 tokens per device and micro-step: raise optim.grad_accum"

  _, init_state = train.state_init(config, model_cfg)
  state = jax.eval_shape(init_state, jax.random.key(0))
  sizes = [int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)]
  assert sum(sizes) == LLAVA_7B_PARAMS
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype("float32")}
  trainable = jax.tree.leaves(optim.trainable_mask(state.params, tuple(config.optim.freeze)))
  n_train = sum(n for n, t in zip(sizes, trainable) if t)
  if name == "llava_stage1.py":
    assert n_train == PROJECTOR_7B
  else:   # everything but the CLIP tower
    vision = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params["vision"]))
    assert n_train == LLAVA_7B_PARAMS - vision

  # The state (weights + Adam moments of what trains) sharded over the command's mesh, per device.
  shardings = sharding.tree_shardings(state, model_cfg, mesh)
  per_device = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
                   for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)))
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  assert total == 4 * (LLAVA_7B_PARAMS + 2 * n_train) + sum(
      x.size * x.dtype.itemsize for x in jax.tree.leaves(state) if x.ndim == 0)
  assert per_device < min(1.05 * total / devices, STATE_BYTES_PER_DEVICE), (per_device / 2**30, total / 2**30)


@pytest.mark.parametrize("name,devices,spec,overrides", CPU, ids=[c[0] for c in CPU])
def test_cpu_miniature_command_is_tiny_and_takes_init_from_the_command_line(name, devices, spec, overrides):
  default = _load(spec, [])
  assert not (default.init.checkpoint or default.init.vision_dir or default.init.llm_dir)
  config = _load(spec, overrides)
  _check_init(config)
  assert config.model.preset == "tiny" and config.num_steps <= 30 and config.data.workers == 0
  model_cfg = train.model_config(config)
  assert config.data.seq_len <= model_cfg.text.max_position_embeddings
  assert (model_cfg.param_dtype, model_cfg.remat_policy) == ("float32", "none")   # the tiny model's own
  mesh = _mesh(config, 8)   # CI's 8 simulated devices
  assert config.data.batch_size % (mesh.shape["data"] * mesh.shape["fsdp"] * config.optim.grad_accum) == 0
  optim.make_schedule(config.optim, config.num_steps)   # warm-up shorter than the run
  _check_pipeline(config, model_cfg)


@pytest.mark.parametrize("name", RECIPES)
def test_13b_arg_builds_the_llava_1_5_13b_state(name):
  config = _load(f"experiments/configs/{name}:13b", [])
  _check_init(config)
  state = jax.eval_shape(train.state_init(config, train.model_config(config))[1], jax.random.key(0))
  assert abs(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)) - 13.35e9) < 0.01e9
  with pytest.raises(UserError, match="takes no arg, 'cpu' or one of 7b, 13b"):
    _load(f"experiments/configs/{name}:70b", [])


# The papers' hyperparameters, pinned: (tasks, weights, conversation, batch, lr, freeze).
HYPER = {
    "llava_stage1.py": (("instruction",), (1.0,), "plain", 256, 1e-3, ("^vision/", "^llm/")),
    "llava_stage2.py": (("instruction",), (1.0,), "vicuna_v1", 128, 2e-5, ("^vision/",)),
    "behavior_llava.py": (("blift", "instruction"), (1.0, 1.0), "vicuna_v1", 128, 2e-5, ("^vision/",)),
    "lcbm.py": (("behavior_simulation", "kbft", "likes_high_low", "content_simulation_choice",
                 "tweet_generation", "behavior_understanding"), (1.0,) * 6, "vicuna_v1", 128, 2e-5, ("^vision/",)),
}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_hyperparameters(name):
  c = _load(f"experiments/configs/{name}", [])
  tasks, weights, conversation, batch, lr, freeze = HYPER[name]
  assert (c.data.tasks, c.data.weights, c.data.conversation) == (tasks, weights, conversation)
  assert (c.data.batch_size, c.optim.lr, c.optim.freeze) == (batch, lr, freeze)
  assert c.optim.warmup_steps == round(0.03 * c.num_steps) and c.optim.end_lr_ratio == 0.0   # 3%, cosine to 0
  assert c.optim.weight_decay == 0.0 and c.optim.b2 == 0.999 and c.optim.clip_norm == 1.0
  assert set(tasks) <= set(verbalize.TASKS)
  if name == "behavior_llava.py" or name == "lcbm.py":
    assert c.init.checkpoint == "llava-hf/llava-1.5-7b-hf"
