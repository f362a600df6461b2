"""Checks made before any work starts, so that a run does not train for an hour and then
find it cannot write its result: the output is a directory it can write to, with room.

Each check raises `LmcError` with one sentence naming the flag and the fix; none of them
creates anything (a probe file is written and removed in the nearest existing folder).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lmc_jax.errors import LmcError


def nearest_existing(path: Path) -> Path:
  """`path` or its closest ancestor that exists."""
  path = Path(os.path.abspath(path))
  while not path.exists() and path != path.parent:
    path = path.parent
  return path


def check_output_dir(path, flag: str = "--out") -> Path:
  """`path` is, or can be made, a directory this process can write into; returns it.

  Refuses a path that is a file (or has a file where a folder of it should be), and one
  whose nearest existing folder cannot be written (permissions, a read-only disk)."""
  path = Path(path)
  base = nearest_existing(path)
  if not base.is_dir():
    what = "is a file" if base == Path(os.path.abspath(path)) else f"lies under the file {base}"
    raise LmcError(f"{flag}={path} {what}, not a directory; pass a directory (it is created "
                   "if missing).")
  try:
    fd, probe = tempfile.mkstemp(prefix=".lmc_jax_write_probe.", dir=base)
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise LmcError(f"{flag}={path} cannot be written ({base}: {e.strerror or e}); pass a "
                   "directory you can write to, or fix its permissions.") from None
  return path


def free_bytes(path) -> int:
  """Free space on the disk that holds `path` (or would hold it once made)."""
  return shutil.disk_usage(nearest_existing(Path(path))).free


def format_bytes(n: float) -> str:
  """`512 B`, `3.2 MiB`, `1.5 GiB`, `2.0 TiB`."""
  n = float(n)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if n < 1024 or unit == "TiB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  raise AssertionError("unreachable")


def check_disk_room(path, need: int, what: str, flag: str = "--out") -> None:
  """Refuses when the disk under `path` has less than `need` bytes free (plus 5 % and
  16 MiB of slack); `what` says what needs the room ("2 zoos of 50 models")."""
  free = free_bytes(path)
  if free < need * 1.05 + (16 << 20):
    raise LmcError(f"{flag}={path} has {format_bytes(free)} free but {what} needs about "
                   f"{format_bytes(need)}; free some space or pass another {flag}.")
