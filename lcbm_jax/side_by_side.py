"""What `lcbm bench train --compare-torch` and `lcbm bench decode` share: torch and transformers loaded
with an error that names the fix, and two sides timed alternately.

  torch, transformers, threads = side_by_side.torch_stack("lcbm bench decode", threads)
  ours_s, theirs_s = side_by_side.alternate((ours, theirs), rounds=3)   # median seconds per side
"""
from __future__ import annotations

import os
import statistics
import time

from lcbm_jax.errors import UserError

# A pause before each timed call: the OpenMP threads of the side that just ran spin for a while after
# it returns (libgomp's spin-wait) and would otherwise take cores from the other side's timing.
SETTLE_S = 0.5


def torch_stack(command: str, threads: int | None):
  """(torch, transformers, threads) with torch set to `threads` (default: every core)."""
  try:   # optional (the test extra): only the comparisons need them
    import torch
    import transformers
  except ImportError as e:
    raise UserError(f"{command} needs torch and transformers ({e}); pip install -e '.[test]'") from None
  threads = threads or os.cpu_count()
  torch.set_num_threads(threads)
  return torch, transformers, threads


def alternate(sides, rounds: int) -> list[float]:
  """Median wall seconds of each zero-argument callable in `sides`, called in turn `rounds` times, so
  load on a shared machine hits every side alike."""
  times = [[] for _ in sides]
  for _ in range(rounds):
    for fn, t in zip(sides, times):
      time.sleep(SETTLE_S)
      t0 = time.perf_counter()
      fn()
      t.append(time.perf_counter() - t0)
  return [statistics.median(t) for t in times]
