"""`lcbm bench memory`: the per-device figures come from the trainer's own sharded step, and TPU
targets without libtpu fail with the fix (the TPU compile itself runs where libtpu is: docs/performance.md)."""
import json
import math
import subprocess
import sys

import jax
import pytest

from lcbm_jax import cli, sharding
from lcbm_jax.errors import UserError
from lcbm_jax.training import memory, train


def _state_bytes(config) -> int:
  """Bytes of the whole train state (params + optimizer), from eval_shape (nothing allocated)."""
  _, init_state = train.state_init(config, train.model_config(config))
  abstract = jax.eval_shape(init_state, jax.random.key(0))
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(abstract))


def test_estimate_shards_the_state_and_remat_cuts_temporaries():
  """On 8 CPU devices (the GPU-target path), the arguments are the state's eighth plus the batch's,
  and full remat needs fewer temporaries than none."""
  full = memory.measure("tiny", "8xH100", 1, "full", batch_size=16, seq_len=256)
  none = memory.measure("tiny", "8xH100", 1, "none", batch_size=16, seq_len=256)
  assert full["estimate"] and full["chips"] == 8 and full["rows_per_device"] == 2
  config = memory.recipe("tiny", 8, 1, "full", batch_size=16, seq_len=256)
  model_cfg = train.model_config(config)
  spec = train.batch_spec(config, model_cfg, sharding.make_mesh(1, 8, 1))
  batch = sum(math.prod(s.shape) * s.dtype.itemsize for s in spec.values())
  expected = _state_bytes(config) / 8 + batch / 8
  # Small leaves (norm scales, biases) that do not divide by 8 stay replicated: a few percent more.
  assert expected <= full["arguments_bytes"] <= 1.1 * expected, (full["arguments_bytes"], expected)
  assert none["temp_bytes"] > full["temp_bytes"], (none["temp_bytes"], full["temp_bytes"])
  assert full["peak_bytes"] >= full["arguments_bytes"] + full["temp_bytes"]
  table = memory.format_table([full, none])
  assert "cpu (estimate)" in table and "| tiny | 8xH100 |" in table


def test_tpu_target_without_libtpu_names_the_fix():
  with pytest.raises(UserError, match=r"libtpu.*tpu-aot"):
    memory.measure("tiny", "v5p-8", 1, "full", batch_size=8, seq_len=64)


def test_cli_runs_the_estimate_in_a_child_with_the_target_device_count(tmp_path):
  """From a process with one CPU device, the 8-GPU estimate compiles in a child with 8."""
  out = tmp_path / "r.json"
  env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
  done = subprocess.run([sys.executable, "-m", "lcbm_jax.cli", "bench", "memory", "--preset", "tiny", "--target",
                         "8xH100", "--seq-len", "128", "--remat", "full", "--json", str(out)],
                        capture_output=True, text=True, env=env)
  assert done.returncode == 0, done.stderr[-2000:]
  (r,) = json.loads(out.read_text())
  assert r["chips"] == 8 and r["rows_per_device"] == 16 and r["remat"] == "full"
  assert "| tiny | 8xH100 | cpu (estimate) | fsdp 8 | 16 x 128" in done.stdout


def test_a_refused_compile_keeps_what_it_needed():
  """libtpu's CompileTimeHbmOom messages (as 0.0.52 prints them for 7B and 13B without remat)."""
  msg = ("RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: Ran out of memory on HBM, the total memory required for "
         "HLO temporaries ({}) exceeds available HBM (95.73G). HLO module: jit_train_step.")
  assert memory.refused_temporaries(msg.format("988.33G")) == int(988.33 * 2**30)
  assert memory.refused_temporaries(msg.format("1.16T")) == int(1.16 * 2**40)
  assert memory.refused_temporaries("RESOURCE_EXHAUSTED: out of host memory") is None


@pytest.mark.parametrize("argv", [["bench", "memory", "--preset", "tiny", "--target", "8xH100", "--grad-accum", "0"],
                                  ["bench", "decode", "--repeats", "0"], ["bench", "decode", "--new-tokens", "-3"]])
def test_counts_below_one_are_refused_by_name(argv, capsys):
  """Zero micro-batches or timing rounds would crash deep inside (a modulo by zero, a median of
  nothing); the command line refuses them first, naming the flag."""
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  assert e.value.code == 2
  assert f"argument {argv[-2]}: must be an int >= 1" in capsys.readouterr().err
