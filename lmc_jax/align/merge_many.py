"""MergeMany (Ainsworth et al., Git Re-Basin, Algorithm 3): align N models jointly.

Instead of matching every model to one reference (a star, which favours pairs that include
the reference), each model in turn is weight-matched to the mean of all the others (as
currently permuted), until a full round changes no permutation. The shared frame is then
re-expressed as the reference's own (its permutation undone from every model), which
changes no pairwise distance or curve.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence

import jax
import numpy as np

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.align.weight import matching_objective, weight_matching
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_permutation,
  compose_permutations,
  identity_permutation,
  invert_permutation,
  perm_sizes,
)
from lmc_jax.tree_utils import take


class MergeManyResult(NamedTuple):
  perms: List[Dict[str, np.ndarray]]  # one per model, identity at the reference
  rounds: int  # rounds run (the last changed nothing, unless max_rounds was reached)
  changed: List[int]  # models whose permutation changed, per round
  objective: List[float]  # sum over models of <mean of the others, model>, after each round


def merge_many(key, spec: PermutationSpec, params_stack, reference: int = 0,
               skip: Sequence[int] = (), max_rounds: int = 100,
               max_iter: int = 50) -> MergeManyResult:
  """Joint permutations of the models of a stacked zoo; models in `skip` keep the identity
  and take no part."""
  host = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params_stack)
  n = jax.tree_util.tree_leaves(host)[0].shape[0]
  models = [k for k in range(n) if k not in set(skip)]
  sizes = perm_sizes(spec, take(host, models[0]))
  perms = {k: identity_permutation(sizes) for k in models}
  aligned = {k: take(host, k) for k in models}
  total = jax.tree_util.tree_map(lambda *xs: sum(xs), *aligned.values())
  mean_of_others = lambda k: jax.tree_util.tree_map(lambda t, a: (t - a) / (len(models) - 1),
                                                    total, aligned[k])
  changed_per_round, objective = [], []
  rounds = 0
  for r in range(max_rounds):
    rounds += 1
    changed = []
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, r), len(models)))
    for i in order:
      k = models[i]
      res = weight_matching(jax.random.fold_in(jax.random.fold_in(key, r), k), spec,
                            mean_of_others(k), take(host, k), max_iter, init_perm=perms[k])
      if any(not np.array_equal(res.perm[p], perms[k][p]) for p in sizes):
        new = apply_permutation(spec, res.perm, take(host, k))
        total = jax.tree_util.tree_map(lambda t, a, b: t - a + b, total, aligned[k], new)
        perms[k], aligned[k] = res.perm, new
        changed.append(k)
    changed_per_round.append(changed)
    objective.append(float(sum(
        matching_objective(spec, identity_permutation(sizes), mean_of_others(k), aligned[k])
        for k in models)))
    if not changed:
      break
  # Express the shared frame as the reference's: undo its permutation everywhere.
  ref = reference if reference in perms else models[0]
  undo = invert_permutation(perms[ref])
  out = [compose_permutations(undo, perms[k]) if k in perms else identity_permutation(sizes)
         for k in range(n)]
  return MergeManyResult(out, rounds, changed_per_round, objective)


@register("mergemany", "all models matched jointly to their common mean (no reference "
          "favoured)", uses=("seed", "max_iter", "signs"),
          settings=(Setting("mergemany_rounds", 100, "Most MergeMany rounds over all models.",
                            low=1),))
def _align_by_merge_many(task: AlignTask) -> Alignment:
  s = task.settings
  res = merge_many(task.key, task.spec, task.params, task.reference, task.skip,
                   s.mergemany_rounds, s.max_iter)
  return Alignment(res.perms, {"rounds": res.rounds,
                               "changed_per_round": [len(c) for c in res.changed],
                               "objective": res.objective})
