"""Spreading a zoo over devices: a one-axis `Mesh` named `models`.

The model axis of a zoo (and the pair axis of a sweep) is split over every visible device;
everything shared by the models (the dataset, the split being evaluated) is replicated.
A zoo whose size does not divide the device count is padded with extra models, trained
and dropped, so every device holds the same number. On one device all of this is a no-op.

Several hosts: call `jax.distributed.initialize()` first (`--distributed` in the entry
points); `jax.devices()` then lists every host's devices and `to_host` gathers results.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "models"


def model_mesh(devices: Optional[Sequence] = None) -> Mesh:
  """A mesh over `devices` (default: all visible devices) with one axis, `models`."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (AXIS,))


def padded_size(n: int, mesh: Mesh) -> int:
  """`n` rounded up to a multiple of the mesh's device count."""
  d = mesh.devices.size
  return -(-n // d) * d


def _place(tree, sharding: NamedSharding):
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  # Several hosts: every process holds the same full array and contributes its own shards.
  def one(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree_util.tree_map(one, tree)


def split_models(tree, mesh: Mesh, axis: int = 0):
  """Places `tree` (arrays, not PRNG keys) with axis `axis` split over the mesh's devices."""
  return _place(tree, NamedSharding(mesh, PartitionSpec(*([None] * axis + [AXIS]))))


def replicate(tree, mesh: Mesh):
  """Places a full copy of `tree` (arrays, not PRNG keys) on every device of the mesh."""
  return _place(tree, NamedSharding(mesh, PartitionSpec()))


def to_host(tree):
  """numpy copies of (possibly sharded, possibly multi-host) arrays."""
  if jax.process_count() > 1:
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree_util.tree_map(np.asarray, tree)
