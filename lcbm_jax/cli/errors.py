"""The one error wrapper of every entry point: `lcbm`, experiments/main_job.py and the experiment scripts.

A `UserError` (a mistake the user can fix: a bad path, flag or config key) becomes one line on
stderr, `<prog>: error: ...`, and exit code 2; Ctrl-C becomes `<prog>: interrupted` and 130. Any
other exception keeps its traceback: it is a bug.
"""
from __future__ import annotations

import sys
from typing import Callable

from lcbm_jax.errors import UserError


def exit_code(main: Callable[[], int | None], *, prog: str = "lcbm") -> int:
  """Runs `main()` and returns the process exit code (its return value; None counts as 0)."""
  try:
    return int(main() or 0)
  except UserError as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    return 130
