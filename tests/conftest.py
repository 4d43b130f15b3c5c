"""Test setup: 8 simulated CPU devices, forced before jax is imported anywhere.

Sharding tests then really run on a (data, fsdp, tensor) mesh instead of skipping on CPU.
"""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402  (must come after the environment is set)

jax.config.update("jax_num_cpu_devices", 8)
assert jax.device_count() == 8, f"conftest: expected 8 CPU devices, got {jax.devices()}"
