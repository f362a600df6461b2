"""Replacing an installed dataset folder only once its successor is complete and verified.

The new copy is built beside the target (`.<name>.new-<pid>`) and swapped in whole by
`atomic_files.replace_directory` (one exchange where the OS can). A refused or failed
build leaves the target untouched. What a killed run left beside it is removed by the next
run, under a lock file (`.<name>.lock`) so that two runs at once never remove each other's;
a target a kill left missing mid-swap gets the copy that was put aside.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from lmc_jax.atomic_files import (
  aside_name,
  recover_directory,
  remove_stale_asides,
  replace_directory,
)

try:
  import fcntl
except ImportError:  # not on POSIX: runs at once are not serialised
  fcntl = None


def clean_leftovers(target: Path) -> None:
  """Puts back a target a killed swap left missing, then removes the rest it left."""
  if recover_directory(target):
    logging.warning("%s was missing; restored the copy a killed run had set aside.", target)
  for name in remove_stale_asides(target):
    logging.info("Removed %s, left by a killed run.", target.parent / name)


@contextlib.contextmanager
def _lock(target: Path):
  if fcntl is None:
    yield
    return
  with open(target.parent / f".{target.name}.lock", "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def replacing(target):
  """Yields an empty staging folder beside `target`; when the block completes, it becomes
  `target` (whatever was there is removed); when the block raises, `target` is untouched
  and the staging folder removed. `target` may not exist yet."""
  target = Path(target)
  if target.is_symlink():  # replace what the link points at, and keep the link
    target = target.resolve()
  target.parent.mkdir(parents=True, exist_ok=True)
  with _lock(target):
    clean_leftovers(target)
    staging = aside_name(target, "new")
    staging.mkdir()
    try:
      yield staging
      replace_directory(staging, target)
    finally:
      if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
