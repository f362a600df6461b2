"""Unpacking a dataset archive so that nothing lands outside its folder.

Every member is checked before the first is written: no absolute names, no `..`, no links,
devices or fifos; modes lose setuid, setgid, sticky and group/other write bits. Where
tarfile has it (3.12+, and backports from 3.8.17), its "data" filter checks again. The
archive is read to its end, so a damaged or truncated one is refused rather than half
unpacked.
"""
from __future__ import annotations

import copy
import lzma
import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

from lmc_jax.errors import LmcError

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # 3.12+, 3.8.17+, 3.9.17+, 3.10.12+, 3.11.4+
_ONLY_FILES = ("a dataset archive holds only folders and files, so refusing to extract "
               "it")


def safe_member(m: tarfile.TarInfo, archive: Path) -> tarfile.TarInfo:
  """`m` as it may be extracted (a copy without setuid/setgid/sticky or group/other write
  bits, owned by whoever extracts it), or LmcError for a member that would land outside
  the folder or is not a plain folder or file (a link, a device, a fifo)."""
  name = m.name
  parts = name.replace("\\", "/").split("/")
  if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"[A-Za-z]:", name):
    raise LmcError(f"{archive} holds a member {name!r} with an absolute path, which would land "
                   "outside the folder it is unpacked into; refusing to extract it.")
  if ".." in parts:
    raise LmcError(f"{archive} holds a member {name!r} that would land outside the folder it "
                   "is unpacked into; refusing to extract it.")
  if m.issym() or m.islnk():
    link = m.linkname
    base = posixpath.dirname(name) if m.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    outside = (link.startswith(("/", "\\")) or os.path.isabs(link) or resolved == ".."
               or resolved.startswith("../"))
    where = " that points outside the folder it is unpacked into" if outside else ""
    raise LmcError(f"{archive} holds a link {name!r} -> {link!r}{where}; {_ONLY_FILES}.")
  if not (m.isreg() or m.isdir()):
    kind = ("a character device" if m.ischr() else "a block device" if m.isblk()
            else "a fifo" if m.isfifo() else "a special")
    raise LmcError(f"{archive} holds {kind} member {name!r}; {_ONLY_FILES}.")
  safe = copy.copy(m)
  mode = m.mode & 0o755  # no setuid, setgid, sticky, group or other write
  if m.isreg():
    if not mode & 0o100:
      mode &= ~0o111
    mode |= 0o600
  else:
    mode |= 0o700
  safe.mode = mode
  safe.uid, safe.gid, safe.uname, safe.gname = os.getuid(), os.getgid(), "", ""
  return safe


def safe_extract(archive: Path, dest: Path):
  """Unpacks tar `archive` (any compression) into the empty folder `dest`: folders and
  regular files only, every one inside `dest`, without special mode bits. Every member is
  checked before the first is written; where tarfile has it, its "data" filter checks again."""
  try:
    with tarfile.open(archive) as tar:
      members = [safe_member(m, archive) for m in tar.getmembers()]
      for m in members:  # no links are admitted, so no path can resolve elsewhere
        if not (dest / m.name).resolve().is_relative_to(dest.resolve()):
          raise LmcError(f"{archive} holds a member {m.name!r} that would land outside the "
                         "folder it is unpacked into; refusing to extract it.")
      if HAS_DATA_FILTER:
        tar.extractall(dest, members=members, filter="data")
      else:
        tar.extractall(dest, members=members)
      _check_read_to_the_end(tar, archive)
  except getattr(tarfile, "FilterError", ()) as e:
    raise LmcError(f"{archive} holds a member that tarfile refuses to extract ({e}); pass "
                   "an archive of plain folders and files.") from None
  except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
    raise LmcError(_unreadable(archive, e)) from None
  except OSError as e:
    if e.errno is None:  # a damaged compressed stream (gzip CRC, bz2 data)
      raise LmcError(_unreadable(archive, e)) from None
    raise LmcError(f"{archive} could not be unpacked into {dest} ({e}); free space or fix "
                   "permissions there.") from None


def _check_read_to_the_end(tar: tarfile.TarFile, archive: Path) -> None:
  """tarfile ends an archive quietly at a damaged or missing header after the first; what
  follows its last member must be the zero blocks that end every tar, and reading them to
  the end makes a compressed stream check its trailer (gzip's CRC and length)."""
  tar.fileobj.seek(tar.offset)
  zeros = 0
  while block := tar.fileobj.read(1 << 20):
    if block.count(0) != len(block):
      problem = f"a damaged header after its {len(tar.getmembers())} readable members"
      break
    zeros += len(block)
  else:
    if zeros >= tarfile.BLOCKSIZE:
      return
    problem = f"it ends after {len(tar.getmembers())} members without the end-of-archive blocks"
  raise LmcError(f"{archive} is not a readable tar archive ({problem}); it is damaged or "
                 "truncated, get it again.")


def _unreadable(archive: Path, e) -> str:
  if zipfile.is_zipfile(archive):
    return (f"{archive} is a zip archive, which this installer does not unpack; unpack it and "
            "pass the folder as --source, or pass a .tar.gz.")
  return (f"{archive} is not a readable tar archive ({type(e).__name__}: {e}); it is damaged "
          "or truncated, get it again.")
