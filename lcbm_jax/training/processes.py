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

The death of process 0 itself is different: the coordination service lives in it, and each other
rank's coordination client aborts its process (a C++ LOG(FATAL) and a stack trace, within a second)
as soon as the service's connection drops; jaxlib offers no callback Python can take over there (its
`missed_heartbeat_callback` cannot pass its status to Python). So `lcbm train` in a multi-process run
is supervised (`run_supervised`): the command runs again in a child that dies with its supervisor;
the supervisor relays the child's stderr as it comes, holds back from the first C++ FATAL line on, and
if the child aborted there, prints one line naming process 0 instead.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

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
# How long process 0 keeps the coordination service up after the exit barrier, for the other ranks'
# disconnects (each takes milliseconds; a loaded host may need a second).
_SERVICE_GRACE_S = 2.0

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
    return
  # Process 0 holds the coordination service: the others disconnect first (a client that loses the
  # service while still connected aborts its process), and process 0 gives them a moment to.
  from jax._src import distributed
  if distributed.global_state.process_id != 0:
    try:
      jax.distributed.shutdown()
    except Exception as e:  # noqa: BLE001
      log.warning("disconnecting from the coordination service: %s", str(e).splitlines()[0][:200])
  else:
    time.sleep(_SERVICE_GRACE_S)


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


# ---------------------------------------------------------------- supervision (a lost process 0)

SUPERVISED_ENV = "LCBM_SUPERVISED"
# The first line of a C++ LOG(FATAL) from absl/glog: "F1201 17:11:47.279415    9942 file.cc:123] ..."
_FATAL_LINE = re.compile(rb"(?:^|\n)(F\d{4} \d\d:\d\d:\d\d\.\d+ [^\n]*)")
_PR_SET_PDEATHSIG = 1


def needs_supervision(num_processes: int | None) -> bool:
  count = num_processes if num_processes is not None else int(os.environ.get("JAX_NUM_PROCESSES", "1") or 1)
  return count > 1 and os.environ.get(SUPERVISED_ENV) != "1"


def _die_with_supervisor() -> None:   # in the child, between fork and exec: the supervisor has no threads
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    pass


def run_supervised(argv: list[str], process_id: int | None, num_processes: int | None) -> int:
  """`lcbm ARGV` in a child process; its exit code, or 2 and one line if it died in JAX's C++ abort.

  SIGTERM and SIGINT are passed on (preemption still saves and exits 0); the child is SIGKILLed by
  the kernel if the supervisor dies, so nothing outlives either.
  """
  me = process_id if process_id is not None else os.environ.get("JAX_PROCESS_ID", "?")
  count = num_processes if num_processes is not None else os.environ.get("JAX_NUM_PROCESSES", "?")
  # Its own session: a signal sent to the supervisor's process group reaches the child once, forwarded.
  child = subprocess.Popen([sys.executable, "-m", "lcbm_jax.cli", *argv], stderr=subprocess.PIPE,
                           env={**os.environ, SUPERVISED_ENV: "1"}, preexec_fn=_die_with_supervisor,
                           start_new_session=True)
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, _: child.send_signal(signum))
  held, tail, fatal = bytearray(), b"", None
  out = sys.stderr.buffer
  while chunk := os.read(child.stderr.fileno(), 1 << 16):
    if fatal is not None:
      held += chunk
      continue
    text = tail + chunk
    m = _FATAL_LINE.search(text)
    if m is None:
      # Keep the last partial line back: a FATAL line may be split across two reads.
      cut = text.rfind(b"\n") + 1
      out.write(text[:cut])
      out.flush()
      tail = text[cut:]
      if len(tail) > 4096 or b"\r" in tail:   # a progress bar redraws in place: let it through
        out.write(tail)
        out.flush()
        tail = b""
      continue
    out.write(text[:m.start(1)])
    out.flush()
    fatal = m.group(1)
    held += text[m.start(1):]
  rc = child.wait()
  if fatal is None:
    out.write(tail)
    out.flush()
    return rc if rc >= 0 else 128 - rc
  what = fatal.decode("utf-8", "replace").split("] ", 1)[-1][:200]
  if b"coordination" in held.lower() or b"heartbeat" in held.lower() or b"distributed" in held.lower():
    print(f"lcbm: error: lost process 0 of {count}, the coordinator (it stopped, or its host is gone): "
          f"process {me} stops too. Rerun the same command on every host to resume from the last "
          f"checkpoint (JAX: {what})", file=sys.stderr, flush=True)
  else:
    print(f"lcbm: error: process {me} aborted in JAX's runtime: {what}", file=sys.stderr, flush=True)
  return EXIT_CODE
