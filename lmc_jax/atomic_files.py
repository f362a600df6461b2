"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every result this project writes (zoos, barrier.json, reports, caches, fetched data) goes
through here, so a run killed mid-write never leaves half a file under the real name.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lmc_jax.crash_points import crash_point
from lmc_jax.errors import DiskFullError
from lmc_jax.preflight import format_bytes, free_bytes

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # the disk, or the user's quota on it, is full


def _json_safe(x):
  """NaN and infinities become null: JSON has no spelling for them."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, np.generic):
    return _json_safe(x.item())
  return x


def _open_for_writing(fd: int):
  """The temporary file's writer (the one place tests fill the disk)."""
  return os.fdopen(fd, "wb")


def atomic_write_bytes(path: Path, write, need=None) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then renames it to `path`.

  `need`: the bytes it writes, where the caller knows (the error names it). A write that
  fails for lack of space removes the temporary and raises `DiskFullError` naming `path`,
  the space it needs (at least what was written when `need` is unknown) and the space
  free; `path` keeps what it held."""
  path = Path(path)
  tmp = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the mode an ordinary open would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with _open_for_writing(fd) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    crash_point(f"write:{path.name}")
    os.replace(tmp, path)
  except BaseException as e:
    written = os.path.getsize(tmp) if tmp and os.path.exists(tmp) else 0
    if tmp and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.errno in NO_SPACE:
      raise disk_full(path, need, written) from None
    raise


def disk_full(path: Path, need=None, written: int = 0) -> DiskFullError:
  """The one sentence for a write to `path` that found no space left."""
  amount = (f"about {format_bytes(need)}" if need else
            f"more than the {format_bytes(written)} written before the disk filled")
  return DiskFullError(f"No space left on the disk for {path}: it needs {amount} and "
                       f"{format_bytes(free_bytes(path))} is free; free some space (or write "
                       "elsewhere) and run the same command again.")


def atomic_write_json(path: Path, obj) -> None:
  data = (json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n").encode()
  atomic_write_bytes(path, lambda f: f.write(data), need=len(data))


def atomic_write_npz(path: Path, arrays: dict) -> None:
  """`numpy.savez(path, **arrays)`, whole or not at all."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  need = sum(a.nbytes + 256 + 2 * len(k) for k, a in arrays.items()) + 22  # zip headers
  atomic_write_bytes(path, lambda f: np.savez(f, **arrays), need=need)


def sha256_file(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()




def sha256_bytes(*arrays) -> str:
  """SHA-256 of the raw bytes of numpy arrays, in order."""
  h = hashlib.sha256()
  for a in arrays:
    h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
  return h.hexdigest()


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_paths(a: Path, b: Path) -> bool:
  """Swaps what the paths `a` and `b` name in one step (Linux's renameat2 with
  RENAME_EXCHANGE); False, with nothing changed, where the OS or the disk cannot."""
  try:
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
  except (AttributeError, OSError):
    return False
  at_fdcwd = -100
  if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
    return False
  raise OSError(err, os.strerror(err), str(a))


def aside_name(target: Path, kind: str) -> Path:
  """`<parent>/.<name>.<kind>-<pid>`: where a directory is built (kind `new`) or put
  aside (`old`) beside `target`; `stale_asides` finds those left by killed runs."""
  return target.parent / f".{target.name}.{kind}-{os.getpid()}"


def stale_asides(target: Path, kind: str) -> list:
  return sorted(target.parent.glob(f".{target.name}.{kind}-*"))


def replace_directory(staged: Path, target: Path, exchange=exchange_paths) -> None:
  """Puts the finished directory `staged` (beside `target`) at `target`.

  With a directory already at `target`, the two are exchanged in one step where the OS
  can, so `target` always names one whole directory, old or new; the old one is then
  removed. Elsewhere the old one is first renamed aside (`aside_name(target, "old")`); a
  crash between the two renames leaves `target` missing and both whole beside it, and
  `recover_directory` puts the new one in place.
  """
  staged, target = Path(staged), Path(target)
  if not target.exists():
    os.replace(staged, target)
    return
  if exchange(staged, target):
    crash_point("swap:exchanged")
    shutil.rmtree(staged)  # now the old directory
    return
  old = aside_name(target, "old")
  os.replace(target, old)
  crash_point("swap:aside")
  try:
    os.replace(staged, target)
  except FileNotFoundError:  # another run's recover_directory moved it in already
    if not target.exists():
      raise
  shutil.rmtree(old)


def recover_directory(target: Path, is_whole=None) -> bool:
  """Where a killed `replace_directory` left `target` missing, puts back the newest built
  directory that `is_whole(path)` accepts (none without `is_whole`), else the one put
  aside; True if it did."""
  target = Path(target)
  if target.exists():
    return False
  built = sorted(stale_asides(target, "new"), key=lambda p: p.stat().st_mtime, reverse=True)
  built = built if is_whole is not None else []
  is_whole = is_whole or (lambda path: True)
  for candidate in built + stale_asides(target, "old"):
    if is_whole(candidate):
      try:
        os.replace(candidate, target)
        return True
      except OSError:  # another run recovered it first
        return target.exists()
  return False


def remove_stale_asides(target: Path) -> list:
  """Removes the directories killed runs built or put aside beside `target` (call it while
  holding `target`'s lock); returns their names."""
  found = stale_asides(Path(target), "new") + stale_asides(Path(target), "old")
  for leftover in found:
    shutil.rmtree(leftover, ignore_errors=True)
  return [p.name for p in found]


def remove_stale_temporaries(directory: Path) -> list:
  """Removes the temporary files `atomic_write_bytes` left in `directory` when a run was
  killed mid-write; returns their names."""
  found = sorted(Path(directory).glob(".*.tmp")) if Path(directory).is_dir() else []
  for p in found:
    p.unlink(missing_ok=True)
  return [p.name for p in found]


def link_or_copy(src: Path, dst: Path) -> None:
  """`src` at `dst` too, as a hard link where the disk allows (a copy elsewhere; folders
  recursively, symbolic links as links): `src` stays where it is, so carrying a user's
  files into a directory about to be swapped in loses nothing if the run is killed."""
  src, dst = Path(src), Path(dst)
  if src.is_symlink():
    os.symlink(os.readlink(src), dst)
  elif src.is_dir():
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy_file)
  else:
    _link_or_copy_file(src, dst)


def _link_or_copy_file(src, dst) -> None:
  try:
    os.link(src, dst, follow_symlinks=False)
  except OSError:
    shutil.copy2(src, dst, follow_symlinks=False)
