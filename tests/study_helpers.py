"""The experiment scripts under test: each loaded as a module (its functions and constants) and run as
the command a user types, on one CPU device as on a laptop (conftest's 8 simulated devices would split
every batch eight ways on 2 cores)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name: str) -> str:
  return os.path.join(ROOT, "experiments", f"{name}.py")


def load(name: str) -> ModuleType:
  """experiments/<name>.py as a module (the scripts are no package: experiments/ ships beside the wheel)."""
  spec = importlib.util.spec_from_file_location(name, script(name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def env(**extra: str) -> dict:
  """This process's environment on one CPU device, plus `extra` (e.g. JAX_COMPILATION_CACHE_DIR)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": " ".join(flags), **extra}


def run(name: str, *args: str, timeout: int = 1200, **extra_env: str) -> subprocess.CompletedProcess:
  """`python experiments/<name>.py ARGS` from the checkout's root, its output captured."""
  return subprocess.run([sys.executable, script(name), *args], cwd=ROOT, env=env(**extra_env), capture_output=True,
                        text=True, timeout=timeout)


def start(name: str, *args: str, **extra_env: str) -> subprocess.Popen:
  """The same command in the background, its output discarded (for a test that kills it)."""
  return subprocess.Popen([sys.executable, script(name), *args], cwd=ROOT, env=env(**extra_env),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
