"""Loss on the plane through three networks (the study's Fig 1.1, 1.2; Garipov et al.).

The plane has origin theta_A and an orthonormal basis: e1 along theta_B - theta_A and e2
along the part of theta_C - theta_A orthogonal to e1. A point (x, y) is the network
theta_A + x e1 + y e2, x and y in units of parameter distance, so theta_A sits at (0, 0),
theta_B at (|theta_B - theta_A|, 0) and theta_C at (<c, e1>, <c, e2>). The grid is
evaluated as one jitted call, chunked like the pair sweep.
"""
from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import to_device
from lmc_jax.lmc.interpolation import pair_chunk_size
from lmc_jax.nn.evaluation import metrics_one, to_batches
from lmc_jax.study_records import PlaneGrid
from lmc_jax.tree_utils import map_in_chunks


class PlaneBasis(NamedTuple):
  origin: dict  # theta_A
  e1: dict  # unit vector, same tree as the params
  e2: dict
  corners: np.ndarray  # (3, 2) coordinates of A, B, C


def _dot(a, b):
  return sum(jnp.vdot(x, y)
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def plane_basis(theta_a, theta_b, theta_c) -> PlaneBasis:
  """Orthonormal basis of the plane through three networks (Gram-Schmidt)."""
  sub = lambda p, q: jax.tree_util.tree_map(lambda x, y: to_device(x, jnp.float32) - y, p, q)
  u, c = sub(theta_b, theta_a), sub(theta_c, theta_a)
  nu = jnp.sqrt(_dot(u, u))
  if float(nu) == 0.0:
    raise LmcError("Networks A and B are identical, so they span no plane; pick other models.")
  e1 = jax.tree_util.tree_map(lambda x: x / nu, u)
  c1 = _dot(c, e1)
  v = jax.tree_util.tree_map(lambda x, y: x - c1 * y, c, e1)
  nv = jnp.sqrt(_dot(v, v))
  if float(nv) <= 1e-6 * float(nu):
    raise LmcError("Network C lies on the line through A and B, so the three span no plane; "
                   "pick another model C.")
  e2 = jax.tree_util.tree_map(lambda x: x / nv, v)
  corners = np.array([[0.0, 0.0], [float(nu), 0.0], [float(c1), float(nv)]])
  origin = jax.tree_util.tree_map(lambda x: to_device(x, jnp.float32), theta_a)
  return PlaneBasis(origin, e1, e2, corners)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _plane_metrics(model, basis_trees, coords, batches, chunk):
  origin, e1, e2 = basis_trees

  def one_point(xy):
    params = jax.tree_util.tree_map(lambda o, a, b: o + xy[0] * a + xy[1] * b, origin, e1, e2)
    return metrics_one(model, params, batches)

  return map_in_chunks(one_point, coords, chunk)


def plane_metrics(model, basis: PlaneBasis, coords, x, y, batch_size: int = 1024, chunk=None):
  """(loss, acc), each `(len(coords),)`, of the networks at plane coordinates `(n, 2)`,
  `chunk` points at a time (default: as many as the sweep's memory budget allows)."""
  coords = np.asarray(coords, np.float32).reshape(-1, 2)
  batches = to_batches(x, y, batch_size)
  stack_like = jax.tree_util.tree_map(lambda v: v[None], basis.origin)
  if chunk is None:
    chunk = pair_chunk_size(stack_like, batches.batch_size, 1, len(coords))
  chunk = max(1, min(int(chunk), len(coords)))
  logging.info("loss plane: %d points in %d chunks of %d", len(coords),
               -(-len(coords) // chunk), chunk)
  loss, acc = _plane_metrics(model, (basis.origin, basis.e1, basis.e2), to_device(coords),
                             batches, chunk)
  return np.asarray(loss), np.asarray(acc)


def plane_grid(model, theta_a, theta_b, theta_c, x, y, resolution: int = 31,
               margin: float = 0.25) -> PlaneGrid:
  """Loss on a `resolution x resolution` grid covering the three networks plus `margin`
  (a fraction of the extent) on every side, and at the three networks themselves."""
  basis = plane_basis(theta_a, theta_b, theta_c)
  lo, hi = basis.corners.min(0), basis.corners.max(0)
  pad = margin * (hi - lo).max()
  xs = np.linspace(lo[0] - pad, hi[0] + pad, resolution)
  ys = np.linspace(lo[1] - pad, hi[1] + pad, resolution)
  gx, gy = np.meshgrid(xs, ys)
  points = np.concatenate([np.stack([gx.ravel(), gy.ravel()], 1), basis.corners])
  loss, acc = plane_metrics(model, basis, points, x, y)
  n = resolution * resolution
  return PlaneGrid(xs, ys, loss[:n].reshape(resolution, resolution),
                   acc[:n].reshape(resolution, resolution), basis.corners, loss[n:])
