"""Orthogonal alignment: where a group of hidden units may be rotated by any orthogonal map
with the function kept (a linear bottleneck; the query/key or value features of attention
heads), align it by the orthogonal Procrustes problem instead of a permutation.

A group `p` of a `PermutationSpec` names every (leaf, axis) its units sit on; an orthogonal
`q` `(n, n)` acts on each as `new = q @ old` along that axis (`apply_orthogonal`; a
permutation is the case of a permutation matrix). Which groups admit every orthogonal map
is decided by the network, not the spec's wiring alone (a ReLU between two layers allows
permutations only), so `orthogonal_groups` checks it: a random orthogonal map of the group
must keep the outputs on the given inputs to float precision.

`orthogonal_alignment` solves, per orthogonal group, `min_q sum_leaves ||q B - A||_F^2`
over the group's leaves (each with the group's axis first, the rest flattened; B the model
to move, A the reference): `q = U V^T` for `A B^T = U S V^T`. Other axes of those leaves are
compared as they stand, so groups of other kinds should be aligned first (by weight or
activation matching). A group the network does not let rotate is refused by name.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import jax
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import to_device
from lmc_jax.nn import random_draws
from lmc_jax.nn.forward import apply_eval
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_soft_permutation,
  head_group,
  leaf_shape,
  perm_sizes,
)
from lmc_jax.tree_utils import flatten


def apply_orthogonal(spec: PermutationSpec, maps: Dict[str, np.ndarray], params):
  """`params` with every axis of group p mixed by `maps[p]` `(n, n)` (`new = maps[p] @ old`),
  or `(H, n, n)`, a map per unit of its head group (`spec.mix_axis`); groups without a map
  keep the identity."""
  sizes = perm_sizes(spec, params)
  full = {p: to_device(maps[p] if p in maps else np.eye(n)) for p, n in sizes.items()}
  return apply_soft_permutation(spec, full, params)


def random_orthogonal(key, n: int) -> np.ndarray:
  """`(n, n)` orthogonal, Haar-distributed (QR of a Gaussian with R's signs fixed)."""
  q, r = np.linalg.qr(np.asarray(random_draws.normal(key, (n, n), float), np.float64))
  return (q * np.sign(np.diag(r))).astype(np.float32)


def orthogonal_groups(model, variables, spec: PermutationSpec, x, tol: float = 1e-4,
                      seed: int = 0) -> Sequence[str]:
  """The groups of `spec` whose units any orthogonal map may rotate: those where a random
  one keeps the outputs on inputs `x` `(n, d)` within `tol` of their largest magnitude."""
  outputs = jax.jit(lambda v: apply_eval(model, v, x))  # compiled once for every group
  base = np.asarray(outputs(variables))
  scale = max(float(np.abs(base).max()), 1e-12)
  keys = jax.random.split(jax.random.key(seed), max(len(spec.perm_to_axes), 1))
  found = []
  for key, (p, n) in zip(keys, perm_sizes(spec, variables).items()):
    if _in_a_view(spec, p):
      continue
    moved = apply_orthogonal(spec, {p: random_orthogonal(key, n)}, variables)
    if np.abs(np.asarray(outputs(moved)) - base).max() <= tol * scale:
      found.append(p)
  return found


def per_head_groups(model, variables, spec: PermutationSpec, x, groups: Sequence[str],
                    tol: float = 1e-4, seed: int = 1) -> Sequence[str]:
  """Of `groups` (rotating ones), those a different orthogonal map per unit of their
  `head_group` may rotate (the query/key and the value features of each attention head):
  random maps, one per head, keep the outputs on inputs `x` within `tol`."""
  outputs = jax.jit(lambda v: apply_eval(model, v, x))
  base = np.asarray(outputs(variables))
  scale = max(float(np.abs(base).max()), 1e-12)
  sizes = perm_sizes(spec, variables)
  found = []
  for i, p in enumerate(groups):
    h = head_group(spec, p)
    if h is None:
      continue
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), i), sizes[h])
    maps = np.stack([random_orthogonal(k, sizes[p]) for k in keys])
    moved = apply_orthogonal(spec, {p: maps}, variables)
    if np.abs(np.asarray(outputs(moved)) - base).max() <= tol * scale:
      found.append(p)
  return found


def _in_a_view(spec: PermutationSpec, p: str) -> bool:
  return any(path in spec.views for path, _ in spec.perm_to_axes[p])


def nearest_orthogonal(m: np.ndarray, dtype=np.float32) -> np.ndarray:
  """The orthogonal `q` `(n, n)` maximising `<m, q>` for `m` `(n, n)`: `U V^T` of its SVD;
  for a stack `(H, n, n)`, one per matrix."""
  u, _, vt = np.linalg.svd(np.asarray(m, np.float64))
  return (u @ vt).astype(dtype)


def procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The orthogonal `q` `(n, n)` minimising `||q b - a||_F` for `a`, `b` `(n, m)`."""
  return nearest_orthogonal(np.asarray(a, np.float64) @ np.asarray(b, np.float64).T)


def _stacked(spec: PermutationSpec, p: str, flat: dict) -> np.ndarray:
  """`(n, m)`: every leaf of group p with the group's axis first, flattened and joined."""
  rows = []
  for path, axis in spec.perm_to_axes[p]:
    leaf = np.asarray(flat[path]).reshape(leaf_shape(spec, path, flat[path].shape))
    rows.append(np.moveaxis(leaf, axis, 0).reshape(leaf.shape[axis], -1))
  return np.concatenate(rows, axis=1)


def orthogonal_alignment(spec: PermutationSpec, reference, other, groups: Iterable[str],
                         allowed: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """Per group of `groups`, the orthogonal map that brings `other`'s weights closest to
  `reference`'s (`apply_orthogonal(spec, maps, other)` aligns it). `allowed` (from
  `orthogonal_groups`) lists the groups the network lets rotate; any other is refused."""
  groups = list(groups)
  if allowed is not None:
    wrong = [p for p in groups if p not in allowed]
    if wrong:
      where = ", ".join(f"{path} axis {a}" for path, a in spec.perm_to_axes[wrong[0]][:3])
      raise LmcError(f"Group {wrong[0]} ({where}, ...) does not keep the network's function "
                     "under every orthogonal map (a nonlinearity or a per-unit norm acts on its "
                     "units); align it by permutation (weight or activation matching), or "
                     f"leave it out of the orthogonal groups ({', '.join(allowed) or 'none'}).")
  a, b = flatten(reference), flatten(other)
  return {p: procrustes(_stacked(spec, p, a), _stacked(spec, p, b)) for p in groups}
