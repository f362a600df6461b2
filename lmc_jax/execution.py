"""How code runs on the devices at hand, decided once and passed down: `ExecutionPlan`.

The entry points build one plan at the start (`plan_from_environment`) and hand it to every
layer; a library call without one uses `default_plan()`, made the same way once per
process. This module is the one place that reads the environment about it.

What the plan decides:
- `accelerator`: the accelerator's paths, on a GPU or TPU, or on a CPU where
  `LMC_JAX_ACCELERATOR_PATHS=1` forces them (with `LMC_JAX_ACCELERATOR_MEMORY` bytes, 2 GiB
  by default, standing for the device's memory), so that tests run them without one.
  There every model of a zoo trains in one `vmap`, sweeps size their chunks from the
  device's memory, every loop runs inside `jit`, and weight matching's `auto` matcher is
  the jitted device solver. On a CPU zoos train in cache-sized chunks and `auto` is scipy's.
- `host_loops(tree)`: whether loops over steps, batches and models run from the host, one
  jitted call per step: for networks with a convolution (a 4-d kernel) on one CPU device,
  where XLA runs a convolution inside a loop (`lax.scan`, `lax.map`) about 14x slower than
  alone, and a vmapped (grouped) one about 3x slower per model (BUILD_NOTES.md).
- `devices`: the devices a zoo's model axis (and a sweep's pair axis) is split over.
The numbers are the same on every path (to float32 rounding); only the speed differs.

The helpers at the bottom run an algorithm written once as the plan says: `run_steps` is
`lax.scan` or a host loop over one jitted step, `map_items` a `vmap` (whole or in chunks) or
a host loop over the items.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Mapping, Optional, Sequence, Tuple

import jax

from lmc_jax import host_arrays
from lmc_jax.tree_utils import map_in_chunks, stack, take

ACCELERATOR_PATHS_ENV = "LMC_JAX_ACCELERATOR_PATHS"
ACCELERATOR_MEMORY_ENV = "LMC_JAX_ACCELERATOR_MEMORY"
DEFAULT_FORCED_MEMORY = 2 << 30
# A CPU chunk's working set: about one core's L2 cache (BUILD_NOTES.md measures chunks of
# this size against larger ones).
CPU_CHUNK_BYTES = 2 ** 22


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
  """How code runs (see the module docstring)."""
  devices: Tuple  # every device the model axis is split over
  accelerator: bool  # the accelerator's paths (a GPU or TPU, or forced on a CPU)
  memory_bytes: Optional[int] = None  # of one accelerator (the stand-in where forced)
  cpu_chunk_bytes: int = CPU_CHUNK_BYTES

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def platform(self) -> str:
    return self.devices[0].platform

  def host_loops(self, tree_one) -> bool:
    """Whether loops run from the host for a network whose one-model tree is `tree_one`: a
    convolution (a 4-d leaf) on one CPU device, the accelerator's paths not forced."""
    return (self.num_devices == 1 and not self.accelerator
            and any(getattr(leaf, "ndim", 0) == 4 for leaf in jax.tree_util.tree_leaves(tree_one)))

  def sweep_elements(self) -> int:
    """float32 elements one chunk of a sweep may use: a quarter of an accelerator's memory;
    about one core's L2 cache on a CPU (a chunk that stays in cache runs fastest there)."""
    if self.memory_bytes is not None:
      return self.memory_bytes // 4 // 4
    return self.cpu_chunk_bytes // 4

  def matcher(self) -> str:
    """Weight matching's `auto` matcher: `device` (jitted, every model at once) on the
    accelerator's paths, `host` (scipy, a model at a time) on a CPU."""
    return "device" if self.accelerator else "host"

  def with_devices(self, devices: Sequence) -> "ExecutionPlan":
    return dataclasses.replace(self, devices=tuple(devices))


def _forced(environ: Mapping[str, str]) -> bool:
  return environ.get(ACCELERATOR_PATHS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _device_memory(device) -> Optional[int]:
  try:
    stats = device.memory_stats() or {}
  except (NotImplementedError, AttributeError, RuntimeError):
    return None
  return int(stats["bytes_limit"]) if stats.get("bytes_limit") else None


def plan_from_environment(devices: Optional[Sequence] = None,
                          environ: Optional[Mapping[str, str]] = None) -> ExecutionPlan:
  """The plan for `devices` (default: every visible device) and the environment `environ`
  (default: `os.environ`): the one place that reads LMC_JAX_ACCELERATOR_PATHS and
  LMC_JAX_ACCELERATOR_MEMORY."""
  devices = tuple(jax.devices() if devices is None else devices)
  environ = os.environ if environ is None else environ
  if devices[0].platform != "cpu":
    return ExecutionPlan(devices, True, _device_memory(devices[0]))
  if _forced(environ):
    return ExecutionPlan(devices, True,
                         int(environ.get(ACCELERATOR_MEMORY_ENV, DEFAULT_FORCED_MEMORY)))
  return ExecutionPlan(devices, False)


@functools.lru_cache(maxsize=1)
def default_plan() -> ExecutionPlan:
  """The plan of this process's devices and environment, made once."""
  return plan_from_environment()


def plan_or_default(plan: Optional[ExecutionPlan]) -> ExecutionPlan:
  return default_plan() if plan is None else plan


@functools.lru_cache(maxsize=64)
def _jitted(step: Callable, donate: bool):
  return jax.jit(step, donate_argnums=(0,) if donate else ())


def run_steps(step: Callable, carry, xs, *consts, from_host: bool = False,
              donate: bool = False, on_step: Optional[Callable[[int], None]] = None):
  """`(carry, ys)` of `step(carry, x, *consts) -> (carry, y)` over axis 0 of the pytree `xs`:
  `lax.scan` (inside any jit), or with `from_host` a Python loop over one jitted call of
  `step` per item (outside jit; `donate` donates the carry; `on_step(k)` after the k-th
  call is dispatched). `step` keys the compilation of the host loop: pass the same function
  object (e.g. from a cached factory) to reuse it."""
  if not from_host:
    return jax.lax.scan(lambda c, x: step(c, x, *consts), carry, xs)
  one = _jitted(step, donate)
  ys = []
  for t in range(jax.tree_util.tree_leaves(xs)[0].shape[0]):
    carry, y = one(carry, take(xs, t), *consts)
    ys.append(y)
    if on_step is not None:
      on_step(t + 1)
  return carry, stack(ys, host_arrays.stack) if ys else None


def map_items(f: Callable, xs, *consts, chunk: Optional[int] = None, from_host: bool = False):
  """`f(x, *consts)` for every item on axis 0 of the pytree `xs`, stacked on axis 0: one
  `vmap` (`chunk=None`), chunks of `chunk` items one after another
  (`tree_utils.map_in_chunks`), or with `from_host` a Python loop calling `f` on each item
  as it is (outside jit: `f` jits what it runs, e.g. through `run_steps`)."""
  if from_host:
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    return stack([f(take(xs, k), *consts) for k in range(n)], host_arrays.stack)
  if chunk is None:
    return jax.vmap(lambda x: f(x, *consts))(xs)
  return map_in_chunks(lambda x: f(x, *consts), xs, chunk)
