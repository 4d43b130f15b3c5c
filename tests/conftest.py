"""Test setup: 8 simulated CPU devices, forced before jax is imported anywhere.

Sharding tests then really run on a (data, fsdp, tensor) mesh instead of skipping on CPU.
"""
import os
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
# One persistent compilation cache for the suite, shared by both xdist workers and every subprocess a
# test starts: the suite compiles the same small programs many times over (`lcbm train` runs, the
# studies' smoke modes). Keys hash the program, the options and the jax version, so a stale entry is
# never hit; a partly written entry fails to load and is compiled again (JAX warns, never errs).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"lcbm-jax-test-cache-{os.getuid()}"))
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402  (must come after the environment is set)

jax.config.update("jax_num_cpu_devices", 8)
assert jax.device_count() == 8, f"conftest: expected 8 CPU devices, got {jax.devices()}"
