"""A multi-process run dies as one: a lost rank ends every other rank with one line, not a hang.

Without this, a rank whose peer was SIGKILLed fails its next gloo collective, prints a traceback,
then waits at JAX's shutdown barrier until the coordination service's heartbeat timeout (100 s by
default) turns the lost rank into a C++ LOG(FATAL) and a stack trace.

`initialize` joins the run with the coordination service in recoverable mode (a rank that stops
heartbeating is dropped from the live set instead of aborting everyone) and a `HEARTBEAT_TIMEOUT_S`
timeout, and starts a watchdog thread that asks the service which ranks are alive. Liveness is the
service's: heartbeats come from a C++ thread of each process, so a rank that holds the GIL for a
while (a long tokenizer training, a compile) is never taken for dead. When a rank drops out, the
watchdog prints `lcbm: error: lost process N of M ...` and exits with code 2, about
`HEARTBEAT_TIMEOUT_S` after the death. `exit_if_peer_lost` holds back the runtime error the
survivor's collective raises meanwhile (it cannot tell which rank is gone) until that verdict.

Not covered: the death of process 0 itself. The coordination service lives in it, and each other
rank's coordination client aborts the process (JAX's own C++ message, non-zero, within a second)
as soon as the service's connection drops; jaxlib offers no callback Python can take over there
(its `missed_heartbeat_callback` cannot pass its status to Python).
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading

import jax

from lcbm_jax.errors import UserError

log = logging.getLogger(__name__)

# Silence from a rank's C++ heartbeat thread for this long means the rank or its host is gone; short
# enough that the survivors stop within 30 s, long enough for a loaded host's network.
HEARTBEAT_TIMEOUT_S = 10
_POLL_S = 1.0
# How long a runtime error waits for the watchdog to name a lost rank: the heartbeat timeout, one
# poll, and slack for loaded CPUs.
_VERDICT_S = HEARTBEAT_TIMEOUT_S + 15
# Recoverable mode drops JAX's own shutdown barrier: ranks meet at ours before any of them (process 0
# holds the service) disconnects. Ranks finish together (the last checkpoint's commit is collective);
# a rank that stopped alone on an error waits this long for the others, then goes.
_EXIT_BARRIER_MS = 60 * 1000
EXIT_CODE = 2

_watchdog: "_PeerWatchdog | None" = None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """`jax.distributed.initialize`, then the lost-rank watchdog. All arguments None: a TPU pod's own
  auto-detection."""
  global _watchdog
  jax.config.update("jax_enable_recoverability", True)
  jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  from jax._src import distributed   # the coordination client JAX holds; jax.distributed has no getter
  state = distributed.global_state
  if state.num_processes and state.num_processes > 1:
    _watchdog = _PeerWatchdog(state.client, state.process_id, state.num_processes)
    atexit.register(_exit_barrier, state.client)   # runs before JAX's own atexit shutdown


def lost_message(lost: list[int], me: int, count: int) -> str:
  who = f"process {lost[0]}" if len(lost) == 1 else f"processes {', '.join(map(str, lost))}"
  return (f"lost {who} of {count}: it stopped responding for {HEARTBEAT_TIMEOUT_S} s (killed, crashed or "
          f"its host is gone); process {me} stops too. Rerun the same command on every host to resume "
          "from the last checkpoint")


class _PeerWatchdog:
  """A daemon thread: every `_POLL_S`, the live ranks per the coordination service; one missing ->
  one line on stderr and `os._exit(EXIT_CODE)`, whatever the main thread is blocked in."""

  def __init__(self, client, me: int, count: int):
    self._client, self._me, self._count = client, me, count
    self.lost = threading.Event()
    self._stop = threading.Event()
    threading.Thread(target=self._run, name="lcbm-peer-watchdog", daemon=True).start()

  def _run(self):
    ranks = list(range(self._count))
    while not self._stop.wait(_POLL_S):
      try:
        # Returns once every live rank asked (their watchdogs poll too), or once the service drops
        # a rank that stopped heartbeating.
        live = self._client.get_live_nodes(ranks)
      except Exception as e:  # noqa: BLE001  (the service is going away: shutdown, or process 0 died)
        if not self._stop.is_set():
          log.warning("peer watchdog: cannot reach the coordination service: %s", str(e).splitlines()[0][:200])
        return
      lost = sorted(set(ranks) - set(live))
      if lost and not self._stop.is_set():
        self.lost.set()
        print(f"lcbm: error: {lost_message(lost, self._me, self._count)}", file=sys.stderr, flush=True)
        os._exit(EXIT_CODE)

  def stop(self):
    self._stop.set()


def _exit_barrier(client) -> None:
  if _watchdog is not None:
    _watchdog.stop()   # a rank that finished first is not a lost one
  try:
    client.wait_at_barrier("lcbm_exit", _EXIT_BARRIER_MS)
  except Exception as e:  # noqa: BLE001  (a peer that failed never comes: exit anyway)
    log.warning("exit barrier: %s", str(e).splitlines()[0][:200])


@contextlib.contextmanager
def exit_if_peer_lost():
  """In a multi-process run, an error (a collective whose peer is gone raises JaxRuntimeError or
  ValueError, depending on where it surfaces) waits for the watchdog's verdict: a lost rank ends the
  process with its one line; any other error re-raises, up to `_VERDICT_S` later."""
  try:
    yield
  except Exception as e:
    if _watchdog is not None and not isinstance(e, UserError) and _watchdog.lost.wait(_VERDICT_S):
      threading.Event().wait()   # the watchdog is printing its line and ending the process: no traceback
    raise
