"""The one exception type for mistakes a user can fix (bad path, wrong image count, bad config).

`lcbm` prints it as a single line `lcbm: error: ...` and exits with code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
  """A problem with the user's input; the message must say what to do about it."""
