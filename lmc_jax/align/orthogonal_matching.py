"""Orthogonal matching: weight matching where the groups of hidden units the network lets
rotate (`orthogonal.orthogonal_groups`) are aligned by any orthogonal map, the rest by
(signed) permutations. Registered as the alignment method `orthogonal`.

The objective is weight matching's, `sum over leaves <theta_A, g(theta_B)>`, with `g` a
permutation of each permuting group and an orthogonal `q` `(n, n)` of each rotating one
(`new = q @ old` on every axis of the group). Coordinate ascent: each sweep visits the
groups in an order drawn from the key; with the others held fixed, a permuting group solves
a linear assignment (as `weight.weight_matching`), a rotating group the orthogonal
Procrustes problem (`q = U V^T` for the cross-correlation `M = U S V^T`, the best of all
orthogonal maps). A step is taken only where it raises the objective; it stops when a
sweep changes nothing or after `max_iter` sweeps.

It starts from weight matching with the rotating groups unsigned (a permutation is an
orthogonal map), so its objective is never below that start's. A network no group of which
rotates is refused in one sentence naming it.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence

import jax
import numpy as np

from lmc_jax.align.orthogonal import orthogonal_groups
from lmc_jax.align.registry import Alignment, AlignTask, register
from lmc_jax.align.weight import (
  assignment_total,
  best_assignment,
  matching_costs,
  weight_matching,
)
from lmc_jax.errors import LmcError
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  flatten,
  identity_permutation,
  is_state,
  perm_sizes,
  permute_leaf,
  unit_index,
  validate_spec,
  view_leaves,
)

Maps = Dict[str, np.ndarray]


class OrthogonalMatch(NamedTuple):
  perm: Dict[str, np.ndarray]  # permuting groups; identity on the rotating ones
  maps: Maps  # rotating group -> orthogonal (n, n); apply both to B to align it with A
  objective: List[float]  # after the start, then after each sweep
  sweeps: int


def unsigned_on(spec: PermutationSpec, groups: Sequence[str]) -> PermutationSpec:
  """`spec` with no sign flips on `groups` (a rotation covers them)."""
  return spec._replace(signs={p: a for p, a in spec.signs.items() if p not in set(groups)})


def _rotate_leaf(spec: PermutationSpec, maps: Maps, path: str, leaf, skip=None):
  for axis, p in enumerate(spec.axes_to_perm[path]):
    if p in maps and p != skip:
      leaf = np.moveaxis(np.tensordot(maps[p], leaf, axes=([1], [axis])), 0, axis)
  return leaf


def _moved_leaf(spec, perm, maps, path, leaf, skip=None):
  return _rotate_leaf(spec, maps, path, permute_leaf(spec, perm, path, leaf, skip=skip), skip)


def _objective(spec, perm, maps, flat_a, flat_b) -> float:
  return float(sum(np.vdot(flat_a[k], _moved_leaf(spec, perm, maps, k, flat_b[k]))
                   for k in flat_a if not is_state(k)))


def _costs(spec, perm, maps, flat_a, flat_b, p: str):
  """(even, odd), `(n, n)` each: A's units of group `p` against B's over the axes `p` acts
  on without and with a sign flip (as `weight.matching_costs`), every other group's map
  applied. A rotating group has no flips: its cross-correlation is their sum."""
  return matching_costs(spec, perm, flat_a, flat_b, p,
                        lambda path, leaf: _moved_leaf(spec, perm, maps, path, leaf, skip=p))


def _permutation_matrix(v) -> np.ndarray:
  idx = unit_index(np.asarray(v))
  m = np.zeros((len(idx), len(idx)))
  m[np.arange(len(idx)), idx] = 1.0
  return m


def orthogonal_matching(key, spec: PermutationSpec, params_a, params_b, rotating: Sequence[str],
                        max_iter: int = 50) -> OrthogonalMatch:
  """Aligns B (one model) to A: permutations of the spec's groups and orthogonal maps of
  those in `rotating` (which the caller has checked the network lets rotate)."""
  validate_spec(spec, params_a)
  rotating = sorted(set(rotating))
  spec = unsigned_on(spec, rotating)
  as64 = lambda params: view_leaves(spec, {k: np.asarray(v, np.float64)
                                           for k, v in flatten(params).items()})
  flat_a, flat_b = as64(params_a), as64(params_b)
  sizes = perm_sizes(spec, params_a)
  start_key, key = jax.random.split(key)
  start = weight_matching(start_key, spec, params_a, params_b, max_iter).perm
  maps = {p: _permutation_matrix(start[p]) for p in rotating}
  perm = dict(start, **identity_permutation({p: sizes[p] for p in rotating}))
  objective = [_objective(spec, perm, maps, flat_a, flat_b)]
  names, sweeps = sorted(sizes), 0
  for it in range(max_iter):
    sweeps += 1
    changed = False
    for i in np.asarray(jax.random.permutation(jax.random.fold_in(key, it), len(names))):
      p = names[i]
      even, odd = _costs(spec, perm, maps, flat_a, flat_b, p)
      if p in maps:
        m = even + odd
        u, s, vt = np.linalg.svd(m)
        old, new = float(np.sum(maps[p] * m)), float(s.sum())  # trace(q^T m); its maximum
        if new > old + 1e-10 * max(1.0, abs(old)):
          maps[p], changed = u @ vt, True
      else:
        cols, new = best_assignment(even, odd, p in spec.signs)
        if new > assignment_total(even, odd, perm[p]) + 1e-12 * max(1.0, abs(new)):
          perm[p], changed = cols, True
    objective.append(_objective(spec, perm, maps, flat_a, flat_b))
    if not changed:
      break
  return OrthogonalMatch({p: np.asarray(v) for p, v in perm.items()},
                         {p: m.astype(np.float32) for p, m in maps.items()}, objective, sweeps)


def check_rotating(model, groups: Sequence[str]) -> None:
  """An LmcError naming the network where no group of it rotates."""
  if not groups:
    raise LmcError(
        f"The network {type(model).__name__} has no group of hidden units that every "
        "orthogonal map may rotate with its outputs kept (a nonlinearity, or a norm that "
        "subtracts a mean or scales each unit, acts on every group), so orthogonal alignment "
        "does not apply; align it by weight or activation matching, or train a network whose "
        "stream rotates (--arch=rms_transformer).")


def rotating_groups(task: AlignTask) -> List[str]:
  """The groups of the task's network that rotate, found on its reference model and a few
  training inputs; refused by name where there are no inputs or no such group."""
  if task.fit_x is None:
    raise LmcError("Orthogonal alignment finds the groups that rotate by running the network "
                   "on training inputs, and none were given; pass data (its inputs).")
  rotating = list(orthogonal_groups(task.model, task.member(task.reference), task.spec,
                                    task.fit_x[:16]))
  check_rotating(task.model, rotating)
  return rotating


def rotating_alignment(task: AlignTask, rotating: Sequence[str], found: dict,
                       info: dict) -> Alignment:
  """The `Alignment` of `found` (mover -> `OrthogonalMatch`): the identity and identity
  maps at the reference and skipped models."""
  sizes = perm_sizes(task.spec, task.member(task.reference))
  eye = {p: np.eye(sizes[p], dtype=np.float32) for p in rotating}
  maps = [found[k].maps if k in found else dict(eye) for k in range(task.num_models)]
  return Alignment(task.star(lambda k: found[k].perm), dict(info, rotating=list(rotating)),
                   maps)


@register("orthogonal", "weight matching with every group the network lets rotate (a "
          "scale-free RMSNorm stream, attention's per-head features, a linear bottleneck) "
          "aligned by an orthogonal map", uses=("seed", "max_iter", "signs", "fit_samples"))
def _align_orthogonally(task: AlignTask) -> Alignment:
  rotating = rotating_groups(task)
  ref = task.member(task.reference)
  found = {k: orthogonal_matching(jax.random.fold_in(task.key, k), task.spec, ref,
                                  task.member(k), rotating, task.settings.max_iter)
           for k in task.movers}
  n = task.num_models
  return rotating_alignment(task, rotating, found, {
      "sweeps": [found[k].sweeps if k in found else 0 for k in range(n)],
      "objective": [found[k].objective if k in found else [] for k in range(n)]})
