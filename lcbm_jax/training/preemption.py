"""Preemption: SIGTERM (a TPU VM or cluster taking the machine back) becomes a flag the training loop
polls after each step; the loop then saves, waits for the save to commit, and exits 0, so rerunning the
same command resumes.
"""
from __future__ import annotations

import logging
import signal
import threading

import jax
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class PreemptionWatcher:
  """SIGTERM -> a flag; the loop polls `requested(step)` after each step, saves, and exits 0.

  Multi-process runs ask JAX's preemption sync point instead (the coordination service catches
  SIGTERM itself; a Python handler would take the signal from it), so every process stops at the
  same step.
  """

  def __init__(self, signals=(signal.SIGTERM,)):
    self._flag = threading.Event()
    self._previous = {}
    self._multiprocess = jax.process_count() > 1
    if not self._multiprocess:
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._on_signal)

  def _on_signal(self, signum, frame):
    del frame
    log.warning("received signal %d: will checkpoint and stop after the current step", signum)
    self._flag.set()

  def requested(self, step: int) -> bool:
    if self._multiprocess:
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self._flag.is_set()

  def close(self):
    """Puts the previous signal handlers back."""
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
