"""Shared fixtures; shared helpers (tiny nets with random params) are in `tests.helpers`.

One run of the suite shares one JAX compilation cache: the entry points the tests start as
subprocesses, the xdist workers and the tests themselves compile the same small programs
again and again, and XLA keys each by its program text, so each is compiled once per run.
The cache lives in a fresh temporary folder made by the first process (the xdist controller,
or pytest alone) and removed when it ends; set JAX_COMPILATION_CACHE_DIR yourself to keep one
between runs. Cached executables are the ones XLA compiled, so results do not change.
"""
import os
import shutil
import tempfile

import numpy as np
import pytest

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_made_cache = None


def pytest_configure(config):
  global _made_cache
  if not os.environ.get(_CACHE_ENV):
    _made_cache = tempfile.mkdtemp(prefix="lmc-jax-test-xla-")
    os.environ[_CACHE_ENV] = _made_cache
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


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core this process may use, at most MAX_WORKERS."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(MAX_WORKERS, cores or 1))


@pytest.fixture
def rng():
  return np.random.default_rng(0)
