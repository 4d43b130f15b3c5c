"""Config files and `--config.KEY=VALUE` overrides: types checked, unknown keys named with the close ones."""
import glob
import os

import pytest

from lcbm_jax.errors import UserError
from lcbm_jax.training import config as config_lib

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
