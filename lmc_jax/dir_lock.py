"""One process per zoo directory: an exclusive `flock` on the directory itself.

The lock is taken on the directory's own inode, so it goes when the process does (a
killed run leaves no stale lock) and it moves with the directory when a finished zoo is
swapped in (`atomic_files.replace_directory`). Beside it, the holder writes a note
(`.lmc_jax.lock`: pid, host, command, start time) that a second process names in its
refusal; the note is removed on release.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from lmc_jax.errors import LmcError
from lmc_jax.preflight import nearest_existing
from lmc_jax.result_files import HOLDER_NOTE


def _describe_holder(directory: Path) -> str:
  """`another lmc_jax zoo run (pid 12, on host, `cmd`, since ...)`: the holder's own kind,
  from its note."""
  try:
    note = json.loads((directory / HOLDER_NOTE).read_text())
    return (f"another lmc_jax {note['what']} (pid {note['pid']} on {note['host']}, "
            f"`{note['command']}`, since {note['started']})")
  except (OSError, ValueError, KeyError, TypeError):
    return "another lmc_jax process (it left no note saying which)"


class DirLock:
  """`with DirLock(path, what):` holds `path` (created if missing) for this process.

  A second holder, in this process or another, gets an `LmcError` naming the first.
  Folders it had to create are removed again on release if nothing was put in them."""

  def __init__(self, directory, what: str = "run"):
    self.directory, self.what, self.fd = Path(directory), what, None
    self.existed = nearest_existing(self.directory)

  def __enter__(self) -> "DirLock":
    for _ in range(10):  # the path may be swapped to another directory while we lock it
      self.directory.mkdir(parents=True, exist_ok=True)
      fd = os.open(self.directory, os.O_RDONLY)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        raise LmcError(f"{self.directory} is in use by {_describe_holder(self.directory)}; "
                       "wait for it to finish or stop it, or pass another directory.") from None
      try:
        same = os.stat(self.directory).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if same:
        self.fd = fd
        self._write_note()
        return self
      os.close(fd)
    raise LmcError(f"{self.directory} kept changing while this run tried to lock it; stop "
                   "the other runs writing there and try again.")

  def _write_note(self) -> None:
    note = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = f"{HOLDER_NOTE}.{os.getpid()}.tmp"
    try:
      with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.fd),
                "w") as f:
        json.dump(note, f)
      os.replace(tmp, HOLDER_NOTE, src_dir_fd=self.fd, dst_dir_fd=self.fd)
    except OSError:
      pass  # the note only explains a refusal; the lock itself holds without it

  def __exit__(self, *exc) -> None:
    if self.fd is None:
      return
    try:
      os.unlink(HOLDER_NOTE, dir_fd=self.fd)  # wherever the directory now is
    except OSError:
      pass
    os.close(self.fd)  # releases the flock
    self.fd = None
    path = Path(os.path.abspath(self.directory))
    while path != self.existed and path != path.parent:
      try:
        path.rmdir()  # only if empty
      except OSError:
        break
      path = path.parent
