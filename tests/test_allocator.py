"""allocator.keep_freed_memory: a freed large block stays mapped and is reused without page
faults, checked against glibc's own counters (mallinfo2) and the kernel's (getrusage), each
in a fresh process since the settings are the process's."""
import json
import platform
import subprocess
import sys

import pytest

from lmc_jax import allocator

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt's settings are glibc's")

CHILD = r"""
import ctypes, json, resource, sys
from lmc_jax.allocator import keep_freed_memory
why = "not asked"
if sys.argv[1] == "keep":
  why = keep_freed_memory({"LMC_JAX_KEEP_FREED_MEMORY": sys.argv[2]})
libc = ctypes.CDLL("libc.so.6")
class Mallinfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
              "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
big = 64 << 20
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def touch():
  p = libc.malloc(big)
  before = faults()
  ctypes.memset(p, 1, big)
  return p, faults() - before
p, first = touch()
during = libc.mallinfo2()
libc.free(p)
after = libc.mallinfo2()
p, second = touch()
libc.free(p)
huge = libc.malloc(3 << 30)  # past any finite trim threshold mallopt takes; left untouched
libc.free(huge)
print(json.dumps(dict(why=why, mmapped=during.hblkhd, heap_after_free=after.arena,
                      heap_after_huge_free=libc.mallinfo2().arena,
                      first=first, second=second, pages=big // 4096)))
"""


def _child(mode: str, env_value: str = "") -> dict:
  out = subprocess.run([sys.executable, "-c", CHILD, mode, env_value], capture_output=True,
                       text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_a_freed_block_is_kept_and_reused_without_page_faults():
  kept = _child("keep")
  assert kept["why"] is None
  assert kept["mmapped"] < 64 << 20  # served from the heap, not mmap (small, older ones apart)
  assert kept["heap_after_free"] >= 64 << 20  # not trimmed on free
  assert kept["first"] >= kept["pages"] // 2  # the first touch faults its pages in
  assert kept["second"] < kept["pages"] // 20  # the reuse does not
  assert kept["heap_after_huge_free"] >= 3 << 30  # never trimmed, however much is freed
  plain = _child("plain")  # glibc's defaults: mmap, munmap, fault in again
  assert plain["mmapped"] >= 64 << 20
  assert plain["second"] >= plain["pages"] // 2


@glibc
def test_turned_off_by_the_environment_leaves_malloc_as_it_is():
  off = _child("keep", "0")
  assert off["why"] == "turned off by LMC_JAX_KEEP_FREED_MEMORY=0"
  assert off["mmapped"] >= 64 << 20
  assert off["second"] >= off["pages"] // 2


def test_elsewhere_than_glibc_it_does_nothing(monkeypatch):
  monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
  assert allocator.keep_freed_memory({}) == "not glibc: malloc left as it is"


def test_every_entry_point_applies_it_first(monkeypatch):
  from lmc_jax.cli import common
  calls = []
  monkeypatch.setattr(common, "keep_freed_memory", lambda: calls.append("keep"))
  monkeypatch.setattr(common.app, "run", lambda main, flags_parser: calls.append("run"))
  common.run_main(lambda argv: None, "doc", "__main__")
  assert calls == ["keep", "run"]
