"""Config files and `--config.KEY=VALUE` overrides: types checked, unknown keys named with the close ones."""
import glob
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from lcbm_jax import sharding
from lcbm_jax.errors import UserError
from lcbm_jax.model import presets
from lcbm_jax.training import config as config_lib
from lcbm_jax.training import train

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "*.py")))


def test_every_config_loads_with_its_small_cpu_mode_and_only_known_keys():
  assert len(CONFIGS) >= 3
  known = set(config_lib.flat_keys(config_lib.base_config()))
  for path in CONFIGS:
    text = open(path).read()
    assert "lcbm train --config experiments/configs/" + os.path.basename(path) in text   # run command
    small = "small" if os.path.basename(path) == "demo.py" else "cpu"
    for arg in (None, small):
      c = config_lib.load(path if arg is None else f"{path}:{arg}")
      assert set(config_lib.flat_keys(c)) == known
    assert config_lib.load(f"{path}:{small}").model.preset == "tiny"


def test_overrides_are_typed():
  path = CONFIGS[0]
  c = config_lib.load(path, ["--config.optim.lr=0.5", "--config.num_steps=7", "--config.log.wandb=true",
                             "--config.data.tasks=likes_high_low,blift", "--config.data.weights=(1, 2.5)",
                             "--config.optim.freeze=('^vision/',)", "--config.data.dir=/x"])
  assert c.optim.lr == 0.5 and c.num_steps == 7 and c.log.wandb is True and c.data.dir == "/x"
  assert c.data.tasks == ("likes_high_low", "blift") and c.data.weights == (1.0, 2.5)
  assert c.optim.freeze == ("^vision/",)
  with pytest.raises(UserError, match="expected int"):
    config_lib.load(path, ["--config.num_steps=1.5"])
  with pytest.raises(UserError, match="expected float"):
    config_lib.load(path, ["--config.optim.lr=fast"])
  with pytest.raises(UserError, match="expected true or false"):
    config_lib.load(path, ["--config.log.wandb=maybe"])
  with pytest.raises(UserError, match="a list of float"):
    config_lib.load(path, ["--config.data.weights=('a',)"])


def test_unknown_keys_name_the_close_ones():
  with pytest.raises(UserError, match=r"unknown config key 'optim.lrr'; did you mean optim.lr"):
    config_lib.load(CONFIGS[0], ["--config.optim.lrr=1.0"])
  with pytest.raises(UserError, match="KEY=VALUE"):
    config_lib.load(CONFIGS[0], ["--config.optim.lr"])
  with pytest.raises(UserError, match="not found"):
    config_lib.load("experiments/configs/nope.py")


def test_a_config_that_adds_a_key_is_refused(tmp_path):
  path = tmp_path / "extra.py"
  path.write_text("from lcbm_jax.training.config import base_config\n"
                  "def get_config(arg=None):\n  c = base_config()\n  c.optim.momentum = 0.9\n  return c\n")
  with pytest.raises(UserError, match="optim.momentum"):
    config_lib.load(str(path))


def test_recording_config_notes_leaf_reads():
  c = config_lib.RecordingConfig(config_lib.base_config())
  assert c.optim.lr == 1e-3 and c["data"]["seq_len"] == 512
  assert c.reads == {"optim.lr", "data.seq_len"}
  with pytest.raises(TypeError):
    c.seed = 3


# Memory and precision from the command line: the overrides reach the model config and the compiled step.
DEMO = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "demo.py") + ":small"


def test_dtype_remat_and_grad_accum_overrides_reach_the_compiled_state():
  config = config_lib.load(DEMO, ["--config.model.param_dtype=bfloat16", "--config.model.remat=dots",
                                  "--config.optim.grad_accum=2", "--config.data.seq_len=128"])
  model_cfg = train.model_config(config)
  assert (model_cfg.param_dtype, model_cfg.compute_dtype, model_cfg.remat_policy) == ("bfloat16", "float32", "dots")
  assert config.optim.grad_accum == 2 and model_cfg.text == train.model_config(config_lib.load(DEMO)).text
  mesh = sharding.make_mesh(data=2, fsdp=2, devices=jax.devices()[:4])   # 8 rows = 2 x 2 devices x 2 micro
  steps = train.compile_steps(config, model_cfg, mesh)
  (compiled_state, *_), _ = steps.train_step.in_avals   # what the compiled executable takes
  for state in (steps.abstract_state, compiled_state, steps.init(jax.random.key(0))):
    params = jax.tree.leaves(state.params)
    assert params and {x.dtype for x in params} == {jnp.dtype("bfloat16")}
    # Adam's moments follow the parameters; only the step counters are not floating point.
    floats = [x for x in jax.tree.leaves(state.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert len(floats) == 2 * len(params) and {x.dtype for x in floats} == {jnp.dtype("bfloat16")}
  compute = train.model_config(config_lib.load(DEMO, ["--config.model.compute_dtype=bfloat16"]))
  assert (compute.param_dtype, compute.compute_dtype, compute.remat_policy) == ("float32", "bfloat16", "none")


def test_bad_model_overrides_are_one_line_errors_naming_the_allowed_values():
  for key, bad, allowed in (("param_dtype", "fp8", "float32, bfloat16, float16"),
                            ("compute_dtype", "half", "float32, bfloat16, float16"),
                            ("remat", "some", "none, full, dots, save_attn_out")):
    config = config_lib.load(DEMO, [f"--config.model.{key}={bad}"])
    with pytest.raises(UserError) as e:
      train.model_config(config)
    assert str(e.value) == f"model.{key}={bad!r} is not one of {allowed} ('' keeps the preset's or the checkpoint's)"
  with pytest.raises(UserError, match="expected int"):
    config_lib.load(DEMO, ["--config.optim.grad_accum=two"])


def test_a_checkpoint_architecture_takes_dtype_and_remat_but_refuses_shape_overrides():
  stored = presets.get("tiny")   # stands in for the LCBMConfig a checkpoint stores
  config = config_lib.load(DEMO, ["--config.model.param_dtype=bfloat16", "--config.model.remat=full"])
  cfg = train.apply_overrides(config, stored, shapes=False)
  assert (cfg.param_dtype, cfg.remat_policy, cfg.compute_dtype) == ("bfloat16", "full", "float32")
  assert (cfg.text, cfg.vision) == (stored.text, stored.vision)
  assert train.apply_overrides(config_lib.load(DEMO), stored, shapes=False) == stored   # "" keeps it all
  with pytest.raises(UserError, match=r"^model.hidden_size=96, model.image_size=64 would change the "
                                      r"architecture of the init checkpoint"):
    train.apply_overrides(config_lib.load(DEMO, ["--config.model.hidden_size=96", "--config.model.image_size=64"]),
                          stored, shapes=False)


def test_lcbm_train_with_a_bad_remat_is_one_line_and_exit_2(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=repo, JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
  out = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", "train", "--config", DEMO, "--workdir",
                        str(tmp_path / "run"), "--config.model.remat=everything"], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2 and out.stderr.strip() == (
      "lcbm: error: model.remat='everything' is not one of none, full, dots, save_attn_out "
      "('' keeps the preset's or the checkpoint's)"), out.stderr
