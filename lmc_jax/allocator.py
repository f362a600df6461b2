"""Keep freed memory in the process: glibc's malloc settings for a training process.

XLA on a CPU allocates every output and temporary buffer of a jitted call afresh and frees
it when the call ends. glibc serves a large block with its own `mmap` (or grows the heap)
and hands it back to the kernel on `free` (`munmap`, or trimming the heap's top), so every
step of a training loop page-faults its whole working set in again, zero-filled by the
kernel: a quarter of a ResNet-20 step's CPU time on this project's 2-core machine
(BUILD_NOTES.md). `keep_freed_memory()` asks glibc (`mallopt`) to serve every block from
its heap (`M_MMAP_MAX` 0), never to trim it (`M_TRIM_THRESHOLD`), with one arena for all
threads (`M_ARENA_MAX` 1: a block XLA's worker thread frees is reused by the next call on
any thread). Freed blocks then stay mapped and the next step reuses them. The cost: the
process keeps what it freed until it exits, compilation's memory and the heap's holes
included (a ResNet-20 w4 zoo: 7.0 GiB resident against 1.5-2.2 GiB without).

It changes the whole process, so the library never calls it on its own: every entry point
does at its start (`cli.common.run_main`), and a script may call it first thing. Set
`LMC_JAX_KEEP_FREED_MEMORY=0` to leave malloc as it is. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Mapping, Optional

ENV = "LMC_JAX_KEEP_FREED_MEMORY"

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# -1: trimming off (mallopt(3)); glibc reads it as the largest size. A finite threshold
# (an int: 2 GiB at most) is crossed by a ResNet-20 w4 zoo's freed top of the heap, which
# then went back to the kernel every other epoch, 1.2 GiB at a time (BUILD_NOTES.md).
NEVER_TRIM = -1

_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_ARENA_MAX, 1))


def _libc() -> Optional[ctypes.CDLL]:
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  name = ctypes.util.find_library("c") or "libc.so.6"
  try:
    libc = ctypes.CDLL(name)
  except OSError:
    return None
  return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
  """Applies the settings above to this process. Returns None when applied, else why not
  (turned off by `LMC_JAX_KEEP_FREED_MEMORY=0` in `environ`, default `os.environ`; not
  glibc; glibc refused a setting)."""
  environ = os.environ if environ is None else environ
  if environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
    return f"turned off by {ENV}={environ[ENV]}"
  libc = _libc()
  if libc is None:
    return "not glibc: malloc left as it is"
  refused = [param for param, value in _SETTINGS if libc.mallopt(param, value) != 1]
  return None if not refused else f"glibc refused mallopt parameter(s) {refused}"
