"""The true optimum for narrow one-hidden-layer nets: every permutation of B's hidden units,
scored by the epsilon of its line to A, in one vectorised sweep.

Width w has w! permutations (8! = 40,320), so this is for w <= 8; it tells whether a high
epsilon after weight matching means "no low-loss line exists" or "the heuristic missed it".
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.interpolation import pair_sweep
from lmc_jax.measures import epsilon
from lmc_jax.permutation import PermutationSpec, flatten, unflatten

MAX_EXACT_WIDTH = 8


class ExactResult(NamedTuple):
  perm: dict  # {name: (w,)}: the permutation of B with the lowest epsilon
  epsilon: float  # its epsilon
  all_epsilon: np.ndarray  # (w!,) epsilon of every permutation, in itertools order


def exact_alignment(model, spec: PermutationSpec, params_a, params_b, x, y) -> ExactResult:
  """Best permutation of B by epsilon on (x, y), over all permutations of its hidden layer."""
  if len(spec.perm_to_axes) != 1:
    raise LmcError(f"Exact search handles one hidden layer; this net has {len(spec.perm_to_axes)}.")
  (name, axes), = spec.perm_to_axes.items()
  path, axis = axes[0]
  width = np.asarray(flatten(params_b)[path]).shape[axis]
  if width > MAX_EXACT_WIDTH:
    raise LmcError(f"Exact search over {width}! = {math.factorial(width):,} permutations is too "
                   f"large; it handles widths up to {MAX_EXACT_WIDTH}.")
  perms = np.array(list(itertools.permutations(range(width))), np.int32)
  permuted = unflatten({k: _permute_all(np.asarray(v), spec.axes_to_perm[k], perms)
                        for k, v in flatten(params_b).items()})
  both = jax.tree_util.tree_map(lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)]),
                                params_a, permuted)
  pairs = np.stack([np.zeros(len(perms), np.int32), 1 + np.arange(len(perms), dtype=np.int32)], 1)
  curves = pair_sweep(model, both, pairs, x, y)
  eps = epsilon(curves.loss, curves.alphas)
  best = int(np.argmin(eps))
  return ExactResult({name: perms[best]}, float(eps[best]), eps)


def _permute_all(leaf, axes, perms):
  """(P, *leaf.shape): the leaf under each of the P permutations (one indexing op)."""
  for ax, p in enumerate(axes):
    if p is not None:
      return np.moveaxis(np.take(leaf, perms, axis=ax), ax, 0)
  return np.broadcast_to(leaf, (len(perms),) + leaf.shape)
