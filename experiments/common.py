"""What every entry point shares: one-sentence errors and a non-zero exit."""
from __future__ import annotations

import functools
import sys

from absl import logging

from lmc_jax.errors import LmcError


def exit_on_lmc_error(main):
  """Turns an LmcError into one line on stderr and exit status 2."""
  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except LmcError as e:
      logging.flush()
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  return wrapped


def int_list(values, name: str):
  try:
    return [int(v) for v in values]
  except ValueError:
    raise LmcError(f"--{name} must be a comma-separated list of integers, got "
                   f"{','.join(values)}.") from None
