"""The one exception type for bad user input.

Entry points catch `LmcError` and print its message as a single sentence, then exit
non-zero; anything else is a bug and keeps its traceback.
"""


class LmcError(ValueError):
  """Bad input: the message names the input and the fix."""
