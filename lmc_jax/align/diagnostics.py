"""How much to trust an alignment: how far it moves units, whether restarts agree, and
whether pairwise matches compose (cycle consistency).

`match(a, b)` below is any pairwise method: it returns the permutation that aligns model b
onto model a.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import jax
import numpy as np

from lmc_jax.align.activation import activation_matching
from lmc_jax.align.weight import weight_matching
from lmc_jax.barrier_records import Diagnostics, WeightRestarts
from lmc_jax.lmc.batchnorm import reset_arguments
from lmc_jax.lmc.interpolation import pairwise_aligned_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.symmetry.spec import PermutationSpec, apply_permutation, compose_permutations
from lmc_jax.tree_utils import stack, take, to_numpy

Perm = Dict[str, np.ndarray]


def fraction_moved(perm: Perm) -> float:
  """Share of all hidden units that the permutation moves (0 for the identity)."""
  moved = sum(int(np.sum(np.asarray(v) != np.arange(len(v)))) for v in perm.values())
  return moved / sum(len(v) for v in perm.values())


def agreement(p: Perm, q: Perm) -> float:
  """Share of hidden units on which two permutations agree."""
  same = sum(int(np.sum(np.asarray(p[k]) == np.asarray(q[k]))) for k in p)
  return same / sum(len(v) for v in p.values())


def cycle_consistency(match: Callable[[int, int], Perm], triples: Sequence) -> List[float]:
  """For each triple (a, b, c): the agreement of matching c to a directly with matching c to
  b and then b to a (1.0: the pairwise alignments are transitive). Each pair is matched
  once, however many triples share it."""
  found = {}

  def pair(i, j):
    if (i, j) not in found:
      found[(i, j)] = match(i, j)
    return found[(i, j)]

  return [agreement(compose_permutations(pair(a, b), pair(b, c)), pair(a, c))
          for a, b, c in triples]


def weight_matching_restarts(spec: PermutationSpec, model, params, reference: int,
                             others: Sequence[int], restarts: int, x, y,
                             max_iter: int = 50, reset_x=None) -> WeightRestarts:
  """Weight matching of each model in `others` onto the reference from `restarts` layer
  orders (keys 0..restarts-1): final objective and epsilon on (x, y) of every restart,
  `(len(others), restarts)` each. With `reset_x` (training batches `(R, b, d)`) BatchNorm
  statistics are reset along every line, as the barrier's sweeps do."""
  host = to_numpy(params)
  objective = np.zeros((len(others), restarts))
  aligned = []
  for i, k in enumerate(others):
    for r in range(restarts):
      res = weight_matching(jax.random.key(r), spec, take(host, reference), take(host, k), max_iter)
      objective[i, r] = res.objective[-1]
      aligned.append(apply_permutation(spec, res.perm, take(host, k)))
  stacked = stack(aligned)
  pairs = np.array([[reference, k] for k in others for _ in range(restarts)], np.int32)
  curves = pairwise_aligned_sweep(model, host, stacked, pairs, x, y, **reset_arguments(reset_x))
  eps = epsilon(curves.loss, curves.alphas).reshape(len(others), restarts)
  spread = eps.max(1) - eps.min(1)
  return WeightRestarts(others, objective, eps, float(np.median(spread)), float(np.max(spread)))


def alignment_diagnostics(model, spec, params, reference: int, usable, fit_x, x, y,
                          settings, triples: int = 10, restarts: int = 5,
                          reset_x=None) -> Diagnostics:
  """Cycle consistency of weight and activation matching over triples (reference, k, k+1),
  and the spread of weight matching over `restarts` layer orders, for up to `triples`
  models besides the reference. `settings` is the `MethodSettings` of the methods (its
  seed and max_iter); `fit_x` the training inputs of activation matching."""
  host = to_numpy(params)
  others = [k for k in usable if k != reference][:triples + 1]
  trips = [(reference, a, b) for a, b in zip(others[:-1], others[1:])]
  key = jax.random.key(settings.seed)
  by_weights = cycle_consistency(
      lambda a, b: weight_matching(key, spec, take(host, a), take(host, b),
                                   settings.max_iter).perm, trips)
  by_activations = cycle_consistency(
      lambda a, b: activation_matching(model, spec, take(host, a), take(host, b), fit_x), trips)
  spread = weight_matching_restarts(spec, model, params, reference, others[:triples], restarts,
                                    x, y, settings.max_iter, reset_x)
  return Diagnostics(by_weights, by_activations, spread, trips)
