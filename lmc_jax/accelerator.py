"""Which code paths run: the accelerator's, or the CPU's, and how to force the former.

On a GPU or TPU every model of a zoo trains in one `vmap`, sweeps size their chunks from
the device's memory, loops run inside `jit` (never from the host), and weight matching's
`auto` matcher is the jitted device solver. On a CPU the zoo trains in cache-sized chunks,
conv nets loop from the host, and `auto` is scipy's solver.

`LMC_JAX_ACCELERATOR_PATHS=1` takes the accelerator's paths on a CPU too, with
`LMC_JAX_ACCELERATOR_MEMORY` (bytes; default 2 GiB) standing for the device's memory, so
that the tests run them on machines without one. The numbers are the same either way (to
float32 rounding); only the speed differs.
"""
from __future__ import annotations

import os
from typing import Optional

import jax

ENV = "LMC_JAX_ACCELERATOR_PATHS"
MEMORY_ENV = "LMC_JAX_ACCELERATOR_MEMORY"
DEFAULT_FORCED_MEMORY = 2 << 30


def forced() -> bool:
  """True where `LMC_JAX_ACCELERATOR_PATHS` asks for the accelerator's paths on a CPU."""
  return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def on_accelerator(device=None) -> bool:
  """True on a GPU or TPU (the first device by default), or where the paths are forced."""
  device = device or jax.devices()[0]
  return device.platform != "cpu" or forced()


def accelerator_memory(device=None) -> Optional[int]:
  """Bytes of memory of an accelerator `device` (the forced stand-in on a CPU); None on a
  CPU whose paths are not forced, or where the device does not say."""
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return int(os.environ.get(MEMORY_ENV, DEFAULT_FORCED_MEMORY)) if forced() else None
  try:
    stats = device.memory_stats() or {}
  except (NotImplementedError, AttributeError, RuntimeError):
    return None
  return int(stats["bytes_limit"]) if stats.get("bytes_limit") else None
