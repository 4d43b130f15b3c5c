"""The launch scripts (experiments/launch/), run against fake `srun`, `pdsh` and `gcloud` on PATH.

The fakes record each call as `shlex.join` of its argv, which is what --dry-run must print. The fake
srun runs every task's command here (SLURM_PROCID etc. set), so the GPU script really starts two CPU
processes that install the wheel built from this checkout and train through jax.distributed.
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap

import pytest

from train_helpers import built_corpus

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "experiments" / "launch"
CONFIG = str(ROOT / "experiments/configs/demo.py") + ":small"

FAKE_SRUN = """
import os, shlex, subprocess, sys
open(os.environ["FAKE_LOG"], "a").write(shlex.join(["srun", *sys.argv[1:]]) + "\\n")
args = sys.argv[1:]
first = next(i for i, a in enumerate(args) if not a.startswith("-"))   # srun's options end here
opts, command = args[:first], args[first:]
n = int(next(o.split("=", 1)[1] for o in opts if o.startswith("--ntasks=")))
procs = [subprocess.Popen(command, env={**os.environ, "SLURM_PROCID": str(i), "SLURM_NTASKS": str(n),
                                        "SLURM_JOB_NODELIST": "localhost"}) for i in range(n)]
sys.exit(max(p.wait() for p in procs))
"""
FAKE_SCONTROL = """
import sys
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
print("localhost")
"""
# gcloud: records; `ssh` prints process 0's summary (preempted on the first call when FAKE_PREEMPT_ONCE).
FAKE_GCLOUD = """
import json, os, shlex, sys
log = os.environ["FAKE_LOG"]
open(log, "a").write(shlex.join(["gcloud", *sys.argv[1:]]) + "\\n")
if "describe" in sys.argv:
  print("READY")
elif "ssh" in sys.argv:
  calls = sum(" ssh " in line for line in open(log))
  preempted = bool(os.environ.get("FAKE_PREEMPT_ONCE")) and calls == 1
  print(json.dumps({"step": 2 if preempted else 3, "preempted": preempted}))
"""
FAKE_RECORDER = """
import os, shlex, sys
open(os.environ["FAKE_LOG"], "a").write(shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""


def _fakes(tmp_path, **scripts) -> str:
  bin_dir = tmp_path / "fakebin"
  bin_dir.mkdir(exist_ok=True)
  for name, body in scripts.items():
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
  return str(bin_dir)


def _env(tmp_path, fakes: str, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LCBM_SUPERVISED")}
  return {**env, "PATH": f"{fakes}{os.pathsep}{env['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log"),
          "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1", **extra}


def _script(name: str, args, env, timeout=60) -> subprocess.CompletedProcess:
  return subprocess.run(["bash", str(LAUNCH / name), *args], env=env, capture_output=True, text=True,
                        timeout=timeout)


def _commands(stdout: str, program: str) -> list[str]:
  return [line for line in stdout.splitlines() if line.startswith(program + " ")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  """`python -m build` (sdist, then the wheel from it) of this checkout's package files, copied first:
  a build writes its egg-info into the source tree, and two xdist workers may build at once."""
  src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  for package in ("lcbm_jax", "data_pipeline"):
    shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
  subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], check=True,
                 capture_output=True, timeout=300)
  (whl,) = out.glob("*.whl")
  return whl


def test_the_wheel_installs_into_a_fresh_venv_and_runs_lcbm(wheel, tmp_path):
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
  python = str(venv / "bin" / "python")
  # As the launch scripts install it: with an extra (dependencies come from the system site here).
  subprocess.run([python, "-m", "pip", "install", "-q", f"{wheel}[gcs]"], check=True, timeout=300)
  subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                 check=True, timeout=300)
  where = subprocess.run([python, "-c", "import lcbm_jax; print(lcbm_jax.__file__)"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
  assert where.startswith(str(venv)), where   # the wheel's copy, not this checkout
  out = subprocess.run([str(venv / "bin" / "lcbm"), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  assert "train" in out.stdout and "export-hf" in out.stdout


def test_gpu_script_under_srun_trains_two_processes(wheel, tmp_path):
  data = built_corpus(tmp_path)
  with socket.socket() as sock:   # a free port for the coordinator
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  workdir = tmp_path / "run"
  overrides = [f"--config.data.dir={data}", "--config.num_steps=3", "--config.optim.warmup_steps=1",
               "--config.log.every_steps=1", "--config.eval.every_steps=0", "--config.eval.batches=1",
               "--config.checkpoint.every_steps=100"]
  args = ["--slurm", "--nodes", "2", "--port", str(port), "--wheel", str(wheel), "--stage", str(tmp_path / "stage"),
          CONFIG, str(workdir), *overrides]
  env = _env(tmp_path, _fakes(tmp_path, srun=FAKE_SRUN, scontrol=FAKE_SCONTROL), TMPDIR=str(tmp_path),
             LCBM_PIP="", LCBM_PYTHON=sys.executable)

  dry = _script("gpu_multihost.sh", ["--dry-run", *args], env)
  assert dry.returncode == 0, dry.stderr
  assert not (tmp_path / "stage").exists() and not (tmp_path / "calls.log").exists()   # ran nothing
  out = _script("gpu_multihost.sh", args, env, timeout=600)
  assert out.returncode == 0, out.stderr[-4000:]
  recorded = (tmp_path / "calls.log").read_text().splitlines()
  assert recorded == _commands(dry.stdout, "srun") and len(recorded) == 1

  assert "2 process(es)" in out.stderr
  shards = re.findall(r"process (\d) of 2: (\d+) train batches from its shard of (\d+) records", out.stderr)
  assert sorted(s[0] for s in shards) == ["0", "1"], out.stderr[-4000:]
  assert len({s[1:] for s in shards}) == 1 and int(shards[0][1]) >= 3, shards   # equal shards and batches
  print("\n".join(f"process {i} of 2: {b} train batches from its shard of {r} records" for i, b, r in sorted(shards)))
  rows = [r for r in map(json.loads, open(workdir / "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == [1, 2, 3]
  # Each process ran the wheel's code from its own venv, and the configs from the stage.
  venvs = sorted(tmp_path.glob("lcbm-venv-*"))
  assert len(venvs) == 2 and all(list(v.glob("lib/python*/site-packages/lcbm_jax/cli")) for v in venvs)
  assert (tmp_path / "stage" / "experiments" / "configs" / "demo.py").is_file()


def test_gpu_script_under_pdsh_runs_each_hosts_command(tmp_path):
  env = _env(tmp_path, _fakes(tmp_path, pdsh=FAKE_RECORDER))
  args = ["--hosts", "gpu0,gpu1", "--repo", "https://git.internal/team/lcbm-jax.git@v0.1", CONFIG,
          str(tmp_path / "run"), "--config.num_steps=5", "--config.data.dir=/shared/data"]
  dry = _script("gpu_multihost.sh", ["--dry-run", *args], env)
  assert dry.returncode == 0, dry.stderr
  out = _script("gpu_multihost.sh", args, env)
  assert out.returncode == 0, out.stderr
  recorded = (tmp_path / "calls.log").read_text().splitlines()
  planned = _commands(dry.stdout, "pdsh")
  assert sorted(recorded) == sorted(planned) and len(planned) == 2   # the hosts start at once
  for i, line in enumerate(planned):
    pdsh, w, host, remote = shlex.split(line)
    assert (pdsh, w, host) == ("pdsh", "-w", f"gpu{i}")
    bash, c, command = shlex.split(remote)   # run by bash, whatever the login shell
    assert (bash, c) == ("bash", "-c")
    assert "'lcbm-jax @ git+https://git.internal/team/lcbm-jax.git@v0.1'" in command
    assert (f"--coordinator-address gpu0:12345 --num-processes 2 --process-id {i} "
            "--config.num_steps=5 --config.data.dir=/shared/data") in command
    assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0


def test_tpu_script_runs_on_every_worker_and_relaunches_after_preemption(wheel, tmp_path):
  overrides = ["--config.data.dir=gs://bucket/data", "--config.num_steps=1000",
               "--config.data.tasks=behavior_simulation,likes_high_low", "--config.optim.freeze=('^vision/', \"it's\")"]
  stage = tmp_path / "stage"
  args = ["--wheel", str(wheel), "--stage", str(stage), "my-pod", "us-central2-b", CONFIG, "gs://bucket/runs/x",
          *overrides]
  env = _env(tmp_path, _fakes(tmp_path, gcloud=FAKE_GCLOUD), LCBM_TPU_POLL_S="0", FAKE_PREEMPT_ONCE="1")
  dry = _script("tpu_vm.sh", ["--dry-run", *args], env)
  assert dry.returncode == 0, dry.stderr
  assert not stage.exists() and not (tmp_path / "calls.log").exists()
  out = _script("tpu_vm.sh", args, env, timeout=120)
  assert out.returncode == 0, out.stderr
  recorded = (tmp_path / "calls.log").read_text().splitlines()
  planned = _commands(dry.stdout, "gcloud")
  assert len(planned) == 2 and recorded[:2] == planned
  # Preempted (saved and exited 0): wait for READY, copy and run the same command again.
  assert [line.split()[4] for line in recorded] == ["scp", "ssh", "describe", "scp", "ssh"]
  assert recorded[3:] == planned

  ssh = shlex.split(planned[1])
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-pod"] and "--worker=all" in ssh
  assert "--worker=all" in shlex.split(planned[0])
  command = ssh[ssh.index("--command") + 1]
  train = shlex.join(["python3", "-m", "lcbm_jax.cli", "train", "--config", "experiments/configs/demo.py:small",
                      "--workdir", "gs://bucket/runs/x", *overrides])
  assert command.endswith(train)
  assert f"'./{wheel.name}[gcs]'" in command
  assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0
  # Without --wheel it builds the checkout: the wheel it names before building is the one `python -m build` writes.
  build = _script("tpu_vm.sh", ["--dry-run", *args[2:]], env)
  assert f"python3 -m build --outdir {stage} {ROOT}" in build.stdout
  assert f"-C {stage} {wheel.name} -C {ROOT} experiments" in build.stdout
  with tarfile.open(stage / "lcbm-launch.tar.gz") as tar:
    names = tar.getnames()
  assert wheel.name in names and "experiments/configs/demo.py" in names
  assert not any("__pycache__" in n for n in names)


def test_a_launch_without_its_arguments_or_with_a_stray_flag_fails_early(tmp_path):
  env = _env(tmp_path, _fakes(tmp_path, gcloud=FAKE_RECORDER))
  bad = _script("tpu_vm.sh", ["--dry-run", "tpu", "zone", CONFIG, "gs://b/w", "--num-steps=3"], env)
  assert bad.returncode == 2 and "expected --config.KEY=VALUE" in bad.stderr
  outside = tmp_path / "mine.py"
  outside.write_text("def get_config(arg):\n  pass\n")
  bad = _script("tpu_vm.sh", ["--dry-run", "tpu", "zone", str(outside), "gs://b/w"], env)
  assert bad.returncode == 2 and "not under" in bad.stderr
  assert _script("gpu_multihost.sh", [CONFIG, "w"], env).returncode == 2   # neither --slurm nor --hosts
  assert not (tmp_path / "calls.log").exists()


# No made-up repository or host: a URL in a launch script is one somebody checked.
PLACEHOLDER = re.compile(r"example\.(com|org|net)|your[-_]?(org|name|user|repo|bucket)|placeholder|<[a-z_-]+>"
                         r"|lcbm-jax/lcbm-jax|\bfoo\b|XXX", re.IGNORECASE)
URL = re.compile(r"(https?|git|ssh)://[^\s'\"]+|git@[^\s'\"]+")
CHECKED_URLS: set[str] = set()


def test_no_launch_script_holds_a_placeholder_or_unchecked_url():
  scripts = sorted(LAUNCH.iterdir())
  assert {p.name for p in scripts} >= {"tpu_vm.sh", "gpu_multihost.sh", "common.sh"}
  for path in scripts:
    text = path.read_text()
    assert not PLACEHOLDER.search(text), f"{path.name}: {PLACEHOLDER.search(text).group(0)}"
    assert set(m.group(0) for m in URL.finditer(text)) <= CHECKED_URLS, path.name
  assert PLACEHOLDER.search("git clone https://github.com/your-org/lcbm-jax")
  assert URL.search("REPO=https://github.com/lcbm-jax/lcbm-jax.git")
