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
orthogonal map), so its objective is never below that start's. Groups inside attention
heads may take a map per head, `(H, n, n)` (`per_head`): their leaves are left out of the
start, the heads are matched as blocks at each pair's best maps (the nuclear norm of their
cross-correlation), and each head's maps are its own Procrustes fit. A network no group of which
rotates is refused in one sentence naming it.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence

import jax
import numpy as np

from lmc_jax.align.orthogonal import nearest_orthogonal, orthogonal_groups, per_head_groups
from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
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
  head_group,
  identity_permutation,
  is_state,
  matched_axes,
  mix_axis,
  perm_sizes,
  permute_leaf,
  unit_index,
  validate_spec,
  view_leaves,
)
from lmc_jax.tree_utils import unflatten

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
      leaf = mix_axis(maps[p], leaf, path, axis, spec, p)
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


def _by_head(spec, perm, maps, flat_a, flat_b, p: str, h: str, skip_heads: bool = False):
  """A's and B's leaves of group `p`, each `(H, n, rest)` (h's axis, then p's), B moved by
  every group but `p` (and but `h` with `skip_heads`)."""
  rest = {q: m for q, m in maps.items() if q != p}
  for path, axis in matched_axes(spec, p):
    heads = spec.axes_to_perm[path].index(h)
    if skip_heads:
      b = _rotate_leaf(spec, rest, path, permute_leaf(spec, perm, path, flat_b[path], skip=h))
    else:
      b = _moved_leaf(spec, perm, maps, path, flat_b[path], skip=p)
    wa, wb = (np.moveaxis(w, (heads, axis), (0, 1)) for w in (flat_a[path], b))
    yield wa.reshape(wa.shape[:2] + (-1,)), wb.reshape(wb.shape[:2] + (-1,))


def _head_cross(spec, perm, maps, flat_a, flat_b, p: str, h: str) -> np.ndarray:
  """`(H, n, n)`: per head, A's units of `p` against B's (B's heads in place)."""
  return sum(np.einsum("hir,hjr->hij", wa, wb)
             for wa, wb in _by_head(spec, perm, maps, flat_a, flat_b, p, h))


def _heads_cost(spec, perm, maps, flat_a, flat_b, h: str, inner: Sequence[str]) -> np.ndarray:
  """`(H, H)`: A's head i against B's head j, each group of `inner` (mapped per head of
  `h`) at its best map for that pair (the nuclear norm of their cross-correlation), plus
  the plain inner products of h's leaves that hold no group of `inner`."""
  held = {path for p in inner for path, _ in spec.perm_to_axes[p]}
  plain = [(path, axis) for path, axis in matched_axes(spec, h) if path not in held]
  cost = 0.0
  for path, axis in plain:
    wa = np.moveaxis(flat_a[path], axis, 0)
    wb = np.moveaxis(_moved_leaf(spec, perm, maps, path, flat_b[path], skip=h), axis, 0)
    cost = cost + wa.reshape(wa.shape[0], -1) @ wb.reshape(wb.shape[0], -1).T
  for p in inner:
    cross = sum(np.einsum("inr,jmr->ijnm", wa, wb)
                for wa, wb in _by_head(spec, perm, maps, flat_a, flat_b, p, h, True))
    cost = cost + np.linalg.svd(cross, compute_uv=False).sum(-1)
  return cost


def per_head_choice(spec: PermutationSpec, groups: Sequence[str]) -> Dict[str, str]:
  """`{p: head group}` for the groups of `groups` that take a map per head: each leaf of
  them holds one such group (two on a leaf would index each other's heads)."""
  heads = {p: head_group(spec, p) for p in groups}
  heads = {p: h for p, h in heads.items() if h is not None}
  count: Dict[str, int] = {}
  for p in heads:
    for path, _ in spec.perm_to_axes[p]:
      count[path] = count.get(path, 0) + 1
  return {p: h for p, h in heads.items()
          if all(count[path] == 1 for path, _ in spec.perm_to_axes[p])}


def _without(params, paths):
  """`params` with the leaves at `paths` set to zero (they then add nothing to any cost)."""
  return unflatten({k: np.zeros_like(v) if k in paths else v
                    for k, v in flatten(params).items()})


def _permutation_matrix(v) -> np.ndarray:
  idx = unit_index(np.asarray(v))
  m = np.zeros((len(idx), len(idx)))
  m[np.arange(len(idx)), idx] = 1.0
  return m


def orthogonal_matching(key, spec: PermutationSpec, params_a, params_b, rotating: Sequence[str],
                        max_iter: int = 50, per_head: Sequence[str] = ()) -> OrthogonalMatch:
  """Aligns B (one model) to A: permutations of the spec's groups and orthogonal maps of
  those in `rotating` (which the caller has checked the network lets rotate); those also
  in `per_head` (checked likewise, `per_head_choice`) take a map per unit of their head
  group, `(H, n, n)`, and their head group is matched with each pair of heads at its best
  maps."""
  validate_spec(spec, params_a)
  rotating = sorted(set(rotating))
  inner = per_head_choice(spec, [p for p in rotating if p in set(per_head)])
  heads_of = {h: sorted(p for p, g in inner.items() if g == h) for h in set(inner.values())}
  spec = unsigned_on(spec, rotating + sorted(heads_of))  # a map per head covers its signs
  as64 = lambda params: view_leaves(spec, {k: np.asarray(v, np.float64)
                                           for k, v in flatten(params).items()})
  flat_a, flat_b = as64(params_a), as64(params_b)
  sizes = perm_sizes(spec, params_a)
  start_key, key = jax.random.split(key)
  # Leaves of per-head groups are left out of the start: a permutation cannot match their
  # features (each head may be rotated on its own), and counting them misleads the stream.
  held = {path for p in inner for path, _ in spec.perm_to_axes[p]}
  start = weight_matching(start_key, spec, _without(params_a, held), _without(params_b, held),
                          max_iter).perm
  maps = {p: _permutation_matrix(start[p]) for p in rotating}
  for p, h in inner.items():
    maps[p] = np.tile(maps[p], (sizes[h], 1, 1))
  perm = dict(start, **identity_permutation({p: sizes[p] for p in rotating}))
  objective = [_objective(spec, perm, maps, flat_a, flat_b)]
  names, sweeps = sorted(sizes), 0
  tol = lambda new, old: new > old + 1e-10 * max(1.0, abs(old))
  for it in range(max_iter):
    sweeps += 1
    changed = False
    order = [names[i] for i in np.asarray(jax.random.permutation(jax.random.fold_in(key, it),
                                                                 len(names)))]
    # Heads first: their cost holds each pair's best maps, so it needs no maps found yet.
    for p in sorted(heads_of) + [q for q in order if q not in heads_of]:
      if p in inner:
        m = _head_cross(spec, perm, maps, flat_a, flat_b, p, inner[p])
        old, new = float(np.sum(maps[p] * m)), float(np.linalg.svd(m, compute_uv=False).sum())
        if tol(new, old):
          maps[p], changed = nearest_orthogonal(m, np.float64), True
      elif p in maps:
        even, odd = _costs(spec, perm, maps, flat_a, flat_b, p)
        m = even + odd
        u, s, vt = np.linalg.svd(m)
        old, new = float(np.sum(maps[p] * m)), float(s.sum())  # trace(q^T m); its maximum
        if tol(new, old):
          maps[p], changed = u @ vt, True
      elif p in heads_of:
        cost = _heads_cost(spec, perm, maps, flat_a, flat_b, p, heads_of[p])
        cols, new = best_assignment(cost, 0.0, False)
        if tol(new, assignment_total(cost, 0.0, perm[p])):
          perm[p], changed = cols, True
          for q in heads_of[p]:  # each head's maps for its new partner
            maps[q] = nearest_orthogonal(_head_cross(spec, perm, maps, flat_a, flat_b, q, p),
                                        np.float64)
      else:
        even, odd = _costs(spec, perm, maps, flat_a, flat_b, p)
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
  maps (one per head where a mover's are per head) at the reference and skipped models."""
  like = next(iter(found.values())).maps if found else {}
  sizes = perm_sizes(task.spec, task.member(task.reference))
  eye = {p: np.broadcast_to(np.eye(sizes[p], dtype=np.float32), like[p].shape
                            if p in like else (sizes[p], sizes[p])).copy() for p in rotating}
  maps = [found[k].maps if k in found else dict(eye) for k in range(task.num_models)]
  return Alignment(task.star(lambda k: found[k].perm), dict(info, rotating=list(rotating)),
                   maps)


@register("orthogonal", "weight matching with every group the network lets rotate (a "
          "scale-free RMSNorm stream, attention's per-head features, a linear bottleneck) "
          "aligned by an orthogonal map", uses=("seed", "max_iter", "signs", "fit_samples"),
          settings=(Setting("orthogonal_per_head", True, "Orthogonal alignment gives the "
                            "features inside each attention head a map of their own where the "
                            "network allows it (heads matched as blocks); false shares one "
                            "map across the heads."),))
def _align_orthogonally(task: AlignTask) -> Alignment:
  rotating = rotating_groups(task)
  ref = task.member(task.reference)
  per_head = (per_head_groups(task.model, ref, task.spec, task.fit_x[:16], rotating)
              if task.settings.orthogonal_per_head else [])
  found = {k: orthogonal_matching(jax.random.fold_in(task.key, k), task.spec, ref,
                                  task.member(k), rotating, task.settings.max_iter, per_head)
           for k in task.movers}
  n = task.num_models
  return rotating_alignment(task, rotating, found, {
      "per_head": sorted(per_head_choice(task.spec, per_head)),
      "sweeps": [found[k].sweeps if k in found else 0 for k in range(n)],
      "objective": [found[k].objective if k in found else [] for k in range(n)]})
