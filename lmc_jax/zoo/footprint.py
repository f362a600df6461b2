"""How much memory and disk a zoo takes, estimated from its config before anything is
allocated, the refusal of one that cannot fit, and how many models a CPU trains at once.

Everything is counted from shapes (`jax.eval_shape`): the parameters of one model, the
activations of one training batch (every Flax module's output, captured), the dataset.
Training holds per model the params, their gradients, the update and the optimizer's
slots, in float32, plus the activations of the models trained at once (twice: forward
values kept for the backward pass and their gradients).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.nn.architectures import build_network, describe_width
from lmc_jax.nn.forward import is_variables, takes_train
from lmc_jax.nn.models import abstract_variables, num_params
from lmc_jax.preflight import format_bytes

# Optimizer state per parameter, in floats (PyTorch semantics, see nn.optim).
OPTIMIZER_SLOTS = {"adamw": 2, "sgd": 1, "rmsprop": 2, "adagrad": 1}
FLOAT = 4


class Footprint(NamedTuple):
  params_per_model: int  # floats in one model's tree (BatchNorm statistics included)
  activations_per_sample: int  # floats of every module's output for one training sample
  memory_bytes: int  # peak while training, on each device
  disk_bytes: int  # the finished zoo and its checkpoint


def activations_per_sample(model, tree, d_in: int) -> int:
  """Floats of every module's output for one sample in training mode (shapes only)."""
  variables = tree if is_variables(tree) else {"params": tree}
  kwargs = {"train": True} if takes_train(type(model)) else {}
  x = jax.ShapeDtypeStruct((1, d_in), jnp.float32)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=True, **kwargs),
      variables, x)
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(state["intermediates"]))


def models_per_chunk(params_one, batch_size: int, num_models: int,
                     plan: Optional[ExecutionPlan] = None) -> int:
  """How many models one step of the zoo epoch trains at once under `plan`.

  On the accelerator's paths, or with several devices, all of them (one `vmap`). On a CPU,
  as many as keep one chunk's activations and parameters within the plan's
  `cpu_chunk_bytes` (4 MiB, about the cache each core has), split evenly over the chunks
  that takes; a model larger than that trains alone, one after another inside the same
  jitted epoch. Measured on a 2-core CPU (BUILD_NOTES.md): 50 Moons nets of width 512 train
  2.8x faster in chunks of 7 than in one vmap; ten MNIST 3x512 nets 1.2x faster one at a
  time than in one vmap.
  """
  plan = plan_or_default(plan)
  if plan.num_devices > 1 or plan.accelerator:
    return num_models
  # A conv kernel's channels count at every position of a 32x32 image (an upper bound).
  units = sum(int(leaf.shape[-1]) * (1024 if leaf.ndim == 4 else 1)
              for leaf in jax.tree_util.tree_leaves(params_one) if leaf.ndim in (2, 4))
  per_model = 4 * batch_size * units + 4 * num_params(params_one)
  fits = max(1, plan.cpu_chunk_bytes // per_model)
  chunks = -(-num_models // fits)
  return max(1, -(-num_models // chunks))


def zoo_footprint(config: ZooConfig, plan: Optional[ExecutionPlan] = None,
                  models_at_once: Optional[int] = None) -> Footprint:
  """The footprint of training `config` with its models split over the plan's devices, of
  which `models_at_once` per device train in one step (default: as the plan trains them)."""
  plan = plan_or_default(plan)
  num_devices = plan.num_devices
  info = dataset_info(config.data)
  model, d_in, train = build_network(config.model, info), info.d_in, config.train
  tree = abstract_variables(model, d_in)
  params = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
  acts = activations_per_sample(model, tree, d_in)
  n_train, n_test = info.n_train, info.n_test
  batch = min(train.batch_size, n_train)
  per_device = -(-train.num_models // num_devices)
  if models_at_once is None:
    models_at_once = models_per_chunk(tree, batch, per_device, plan)
  at_once = min(per_device, models_at_once)
  slots = OPTIMIZER_SLOTS.get(config.optim.optimizer, 2)
  state = per_device * params * (3 + slots) * FLOAT
  activations = 2 * at_once * batch * acts * FLOAT
  data = (n_train + n_test) * d_in * FLOAT
  host_copies = train.num_models * params * (1 + slots) * FLOAT if num_devices == 1 else 0
  zoo_bytes = train.num_models * params * FLOAT
  checkpoint = train.num_models * params * (1 + slots) * FLOAT
  return Footprint(params, acts, state + activations + data + host_copies,
                   zoo_bytes + checkpoint + train.num_models * train.epochs * FLOAT)


def available_memory(device=None):
  """(bytes free for a zoo on `device` (default: the first), what that is), or None
  where it cannot be told."""
  device = device or jax.devices()[0]
  if device.platform != "cpu":
    try:
      stats = device.memory_stats() or {}
      return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} memory"
    except (KeyError, TypeError, AttributeError, NotImplementedError, RuntimeError):
      return None
  free = _meminfo_available()
  limit = _cgroup_room()
  if free is None and limit is None:
    return None
  return min(v for v in (free, limit) if v is not None), "available memory"


def _meminfo_available() -> Optional[int]:
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def _cgroup_room() -> Optional[int]:
  """Room left under a cgroup v2 memory limit (containers, batch jobs), if there is one."""
  try:
    limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    if limit == "max":
      return None
    used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    return int(limit) - used
  except (OSError, ValueError):
    return None


def describe(config: ZooConfig) -> str:
  """`a zoo of 50 models with hidden widths [512, 512, 512]` (or width multiplier 4)."""
  return f"a zoo of {config.train.num_models} models with {describe_width(config.model)}"


def check_fits(config: ZooConfig, plan: Optional[ExecutionPlan] = None,
               models_at_once: Optional[int] = None) -> Footprint:
  """Refuses, in one sentence naming the size and the flags to change, a zoo whose
  training cannot fit in the memory of its devices; returns its footprint."""
  fp = zoo_footprint(config, plan, models_at_once)
  room = available_memory()
  if room is not None and fp.memory_bytes > room[0]:
    raise LmcError(f"{describe(config)} needs about {format_bytes(fp.memory_bytes)} to train "
                   f"({format_bytes(fp.params_per_model * FLOAT)} of parameters per model) "
                   f"but this machine has {format_bytes(room[0])} of {room[1]}; pass a smaller "
                   "--width or --num_models (or --batch_size, if the activations are what is "
                   "large).")
  return fp
