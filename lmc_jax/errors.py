"""The one exception type for bad user input.

Entry points catch `LmcError` and print its message as a single sentence, then exit
non-zero; anything else is a bug and keeps its traceback.
"""


class LmcError(ValueError):
  """Bad input: the message names the input and the fix."""


class DiskFullError(LmcError):
  """A write failed for lack of space (ENOSPC, or a quota: EDQUOT); the message names the
  path and the space it needs. Whatever was being written is left as it was before."""
