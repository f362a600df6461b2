"""Shared fixtures; shared helpers (tiny nets with random params) are in `tests.helpers`.

The suite keeps one JAX compilation cache, `.cache/jax-tests/` in the checkout (git-ignored):
the entry points the tests start as subprocesses, the xdist workers and the tests themselves
compile the same small programs again and again, and XLA keys each by its program text (and
the jax, jaxlib and XLA versions and flags), so each is compiled once, and on later runs not
at all: on a 2-core CPU the first run takes about 6 minutes, the next ones about 4. A cache
over CACHE_LIMIT_BYTES is emptied when a run starts. LMC_FRESH_TEST_CACHE=1 uses a fresh
temporary folder instead (removed when the run ends), as does a checkout that is not
writable; JAX_COMPILATION_CACHE_DIR set by you is used as it is. Cached executables are the
ones XLA compiled, so results do not change.

The suite's programs are compiled with LLVM at -O1 and with XLA's older elemental emitters
(`suite_flags`, added to XLA_FLAGS for the tests and every process they start) where
users' runs compile with XLA's defaults: the suite is bound by compilation. -O1 compiles in
a third of the time (the random draws of Flax's initializers in a fifth) for slower code;
the older emitters halve the fixed cost of every small program (the newer ones set up an MLIR
context for each). MLP zoos come out the users' numbers to float32 rounding (LayerNorm's
reductions by a few units in the last place; `tests/test_suite_compiler.py` checks it);
conv nets' and transformers' reductions may round differently too (a ResNet-20's BatchNorm
statistics, one epoch on: up to 2e-4 relative), which the tests' tolerances allow.
LMC_TEST_DEFAULT_XLA=1, or an optimisation level already in XLA_FLAGS, runs the suite with
XLA_FLAGS as they are.
"""
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
OPT_LEVEL_FLAG = "--xla_backend_optimization_level=1"
# XLA stops a process whose XLA_FLAGS name a flag it does not know: this one is in jaxlib
# 0.5.3 and later (the floor check runs 0.5.0, whose CPU backend has no newer emitters).
OLDER_EMITTERS_FLAG, OLDER_EMITTERS_SINCE = "--xla_cpu_use_fusion_emitters=false", (0, 5, 3)
KEPT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
CACHE_LIMIT_BYTES = 1 << 30
_made_cache = None


def _kept_cache() -> Optional[Path]:
  """KEPT_CACHE, emptied first where it has grown past CACHE_LIMIT_BYTES; None where the
  checkout is not writable."""
  try:
    KEPT_CACHE.mkdir(parents=True, exist_ok=True)
    size = sum(f.stat().st_size for f in KEPT_CACHE.rglob("*") if f.is_file())
    if size > CACHE_LIMIT_BYTES:
      shutil.rmtree(KEPT_CACHE)
      KEPT_CACHE.mkdir(parents=True)
    probe = KEPT_CACHE / f".probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError:
    return None
  return KEPT_CACHE


def _version(text: str) -> tuple:
  """(0, 5, 3) of "0.5.3" (and of "0.5.3.dev20250101")."""
  return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def suite_flags(jaxlib_version: Optional[str] = None) -> str:
  """The suite's XLA flags for `jaxlib_version` (default: the installed jaxlib's)."""
  if jaxlib_version is None:
    from importlib.metadata import version
    jaxlib_version = version("jaxlib")
  if _version(jaxlib_version) >= OLDER_EMITTERS_SINCE:
    return f"{OPT_LEVEL_FLAG} {OLDER_EMITTERS_FLAG}"
  return OPT_LEVEL_FLAG


def suite_xla_flags(flags: str, jaxlib_version: Optional[str] = None) -> str:
  """`flags` (an XLA_FLAGS value) with the suite's flags added, unless it sets an
  optimisation level itself or LMC_TEST_DEFAULT_XLA is set."""
  if os.environ.get("LMC_TEST_DEFAULT_XLA") or "xla_backend_optimization_level" in flags:
    return flags
  return f"{flags} {suite_flags(jaxlib_version)}".strip()


def pytest_configure(config):
  global _made_cache
  # Before any backend starts (XLA reads its flags once per process); the xdist workers
  # and the processes tests start inherit it.
  os.environ["XLA_FLAGS"] = suite_xla_flags(os.environ.get("XLA_FLAGS", ""))
  if not os.environ.get(_CACHE_ENV):  # set: by the user, or by the xdist controller
    kept = None if os.environ.get("LMC_FRESH_TEST_CACHE") else _kept_cache()
    if kept is None:
      kept = _made_cache = tempfile.mkdtemp(prefix="lmc-jax-test-xla-")
    os.environ[_CACHE_ENV] = str(kept)
  # Small programs too: most of the suite's compiles take well under JAX's 1 s default.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  import jax
  jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
  if _made_cache:
    shutil.rmtree(_made_cache, ignore_errors=True)


MAX_WORKERS = 4  # each worker is a JAX process with its own thread pool and compiled code

# The files that take longest (8 s or more each on an idle 2-core machine, 2026-12-05),
# slowest first. Under xdist (`--dist loadfile --no-loadscope-reorder`, pytest.ini) a
# worker is handed the next file in the order of the collection whenever it is nearly out of
# tests, so these start first and the short files fill in at the end: no worker is left
# running a long file alone while the other waits (xdist's own order, files with the most
# tests first, put the one-test ResNet and reproduction files last and a 13 s two-test file
# near the end). A file not listed here runs after them; list a new slow one.
HEAVY_FILES = ("test_conv_cli.py", "test_reproduce.py", "test_accelerator_paths.py",
               "test_entry_points.py", "test_zoo_faults.py", "test_orthogonal_matching.py",
               "test_methods_any_network.py", "test_user_network.py", "test_sinkhorn.py",
               "test_transformer_cli.py", "test_conv_grad.py", "test_training.py",
               "test_installed.py", "test_conv_zoo.py", "test_models.py", "test_derive_spec.py",
               "test_signals.py", "test_sharding.py", "test_random_draws.py",
               "test_legacy_files.py", "test_transformer_models.py", "test_derive_spec_loops.py",
               "test_analysis_faults.py", "test_signs.py", "test_alignment_methods.py",
               "test_conv_models.py", "test_precision.py", "test_interpolation.py",
               "test_suite_compiler.py", "test_native_conv.py", "test_merge_cli.py")


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core this process may use, at most MAX_WORKERS."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(MAX_WORKERS, cores or 1))


def pytest_collection_modifyitems(session, config, items):
  """Files in HEAVY_FILES first, in its order; then the others, those with the most tests
  first (xdist's own rule), each file's tests in their own order."""
  files = {}
  for item in items:
    files.setdefault(item.nodeid.split("::")[0], []).append(item)
  heavy = {name: k for k, name in enumerate(HEAVY_FILES)}

  def rank(path):
    name = path.rsplit("/", 1)[-1]
    return (0, heavy[name]) if name in heavy else (1, -len(files[path]))

  items[:] = [item for path in sorted(files, key=rank) for item in files[path]]


@pytest.fixture
def rng():
  return np.random.default_rng(0)
