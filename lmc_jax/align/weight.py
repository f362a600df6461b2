"""Weight matching (Ainsworth et al., Git Re-Basin): permute model B's hidden units so
its weights are closest to model A's in Frobenius norm.

Equivalently maximise the objective `sum over leaves <theta_A, pi(theta_B)>`. Where the
spec lets a group flip signs, `pi` is a signed permutation: pairing A's unit i with B's
unit j scores `even_ij + |odd_ij|` (odd: the inner product over the axes a flip negates),
and the sign taken is that of `odd_ij`. With one
hidden layer that is one linear assignment problem, solved exactly. With several it is
NP-hard, so coordinate descent: each sweep visits the permutations in an order drawn
from the key and solves one assignment per permutation with the others held fixed; it
stops when a sweep changes nothing or after `max_iter` sweeps (the study used 50).
"""
from __future__ import annotations

import logging
from typing import Dict, List, NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.align.weight_device import match_many
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_permutation,
  flatten,
  identity_permutation,
  is_state,
  matched_axes,
  perm_sizes,
  permute_leaf,
  permute_zoo,
  signed_permutation,
  unit_index,
  unit_sign,
  validate_spec,
  view_leaves,
)
from lmc_jax.tree_utils import fold_in_each, stack, take, to_numpy


class MatchResult(NamedTuple):
  perm: Dict[str, np.ndarray]  # apply to B to align it with A
  objective: List[float]  # sum <theta_A, pi(theta_B)> after each sweep
  sweeps: int


def matching_costs(spec: PermutationSpec, perm, flat_a, flat_b, p: str, move_leaf=None):
  """(even, odd), `(n, n)` each: entry (i, j) is the inner product of A's unit i with B's
  unit j over the leaf axes that permutation `p` acts on without (even) and with (odd) a
  sign flip, the other permutations applied. Their sum is the plain similarity.
  `move_leaf(path, leaf)` moves B's leaf by every group but `p` (default: the permutations
  `perm`; orthogonal matching also applies its maps)."""
  if move_leaf is None:
    def move_leaf(path, leaf):
      return permute_leaf(spec, perm, path, leaf, skip=p)
  flips = set(spec.signs.get(p, ()))
  even, odd = 0.0, 0.0
  for path, axis in matched_axes(spec, p):
    wa = np.moveaxis(flat_a[path], axis, 0)
    wb = np.moveaxis(move_leaf(path, flat_b[path]), axis, 0)
    n = wa.shape[0]
    c = wa.reshape(n, -1) @ wb.reshape(n, -1).T
    if (path, axis) in flips:
      odd = odd + c
    else:
      even = even + c
  return even, odd


def best_assignment(even, odd, signed: bool):
  """(signed permutation `(n,)` maximising the similarity, its total); plain where not
  `signed`."""
  even, odd = np.broadcast_arrays(np.asarray(even, np.float64), np.asarray(odd, np.float64))
  cost = even + np.abs(odd) if signed else even + odd
  from scipy.optimize import linear_sum_assignment  # 0.25 s to import: at first use
  rows, cols = linear_sum_assignment(cost, maximize=True)
  if signed:
    cols = signed_permutation(cols, np.where(odd[rows, cols] < 0, -1, 1))
  return cols, float(cost[rows, unit_index(cols)].sum())


def assignment_total(even, odd, perm_p) -> float:
  """The similarity of the (signed) permutation `perm_p` under costs (even, odd)."""
  even, odd = np.broadcast_arrays(np.asarray(even, np.float64), np.asarray(odd, np.float64))
  rows, idx = np.arange(even.shape[0]), unit_index(np.asarray(perm_p))
  return float((even[rows, idx] + unit_sign(np.asarray(perm_p)) * odd[rows, idx]).sum())


def matching_objective(spec: PermutationSpec, perm, params_a, params_b) -> float:
  """`sum over leaves <theta_A, pi(theta_B)>`; larger is closer."""
  fa, fb = flatten(params_a), flatten(apply_permutation(spec, perm, params_b))
  return float(sum(np.vdot(np.asarray(fa[k], np.float64), np.asarray(fb[k], np.float64))
                   for k in fa if not is_state(k)))


def weight_matching(key, spec: PermutationSpec, params_a, params_b, max_iter: int = 50,
                    init_perm: Optional[Dict[str, np.ndarray]] = None) -> MatchResult:
  """Permutation of B's hidden units that best matches A's weights (one model each);
  signed where `spec.signs` lets a group flip."""
  validate_spec(spec, params_a)
  flat_a = view_leaves(spec, {k: np.asarray(v, np.float64) for k, v in flatten(params_a).items()})
  flat_b = view_leaves(spec, {k: np.asarray(v, np.float64) for k, v in flatten(params_b).items()})
  sizes = perm_sizes(spec, params_a)
  perm = dict(init_perm) if init_perm is not None else identity_permutation(sizes)
  names = sorted(sizes)
  objective: List[float] = []
  sweeps = 0
  for it in range(max_iter):
    sweeps += 1
    changed = False
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, it), len(names)))
    for i in order:
      p = names[i]
      even, odd = matching_costs(spec, perm, flat_a, flat_b, p)
      cols, new = best_assignment(even, odd, p in spec.signs)
      old = assignment_total(even, odd, perm[p])
      if new > old + 1e-12 * max(1.0, abs(old)):
        perm[p] = cols
        changed = True
    objective.append(matching_objective(spec, perm, flat_a, flat_b))
    if not changed:
      break
  return MatchResult({p: np.asarray(v) for p, v in perm.items()}, objective, sweeps)


class ZooAlignment(NamedTuple):
  params: dict  # the zoo with every model permuted onto the reference, axis 0 the model
  perms: List[Dict[str, np.ndarray]]  # one per model; identity at the reference
  objective: List[List[float]]  # per model: per sweep (host), or the final value (device)
  reference: int
  sweeps: List[int]  # per model (0 at the reference and skipped models)


MATCHERS = ("auto", "host", "device")


def _check_matcher(matcher: str, plan: Optional[ExecutionPlan] = None) -> str:
  """The matcher to run: `auto` is the plan's (`ExecutionPlan.matcher`: `device` on the
  accelerator's paths, `host` on a CPU)."""
  if matcher not in MATCHERS:
    raise LmcError(f"Unknown matcher {matcher!r}; use one of {', '.join(MATCHERS)}.")
  if matcher == "auto":
    return plan_or_default(plan).matcher()
  return matcher


def align_zoo(key, spec: PermutationSpec, params_stack, reference: int = 0,
              max_iter: int = 50, skip=(), matcher: str = "host",
              plan: Optional[ExecutionPlan] = None) -> ZooAlignment:
  """Aligns every model of a stacked zoo to model `reference` by weight matching.

  Model k's layer orders come from `fold_in(key, k)`. Models in `skip` (diverged ones)
  keep the identity permutation and an empty objective. `matcher='device'` matches all
  models at once with the jittable solver (float32); 'host' one at a time with scipy;
  'auto' the plan's (the first on an accelerator, the second on a CPU).
  """
  matcher = _check_matcher(matcher, plan)
  host = to_numpy(params_stack)
  num = jax.tree_util.tree_leaves(host)[0].shape[0]
  validate_spec(spec, host, batch_dims=1)
  ref = take(host, reference)
  sizes = perm_sizes(spec, ref)
  if matcher == "device":
    return _align_zoo_device(key, spec, host, ref, sizes, reference, max_iter, skip, num)
  perms, objective = [], []
  for k in range(num):
    if k == reference or k in set(skip):
      perms.append(identity_permutation(sizes))
      objective.append([])
      continue
    res = weight_matching(jax.random.fold_in(key, k), spec, ref, take(host, k), max_iter)
    perms.append(res.perm)
    objective.append(res.objective)
    if res.sweeps == max_iter and len(res.objective) > 1 and res.objective[-1] > res.objective[-2]:
      logging.info("model %d: weight matching still improving after %d sweeps", k, max_iter)
  return ZooAlignment(permute_zoo(spec, perms, params_stack), perms, objective, reference,
                      [len(o) for o in objective])


def _align_zoo_device(key, spec, host, ref, sizes, reference, max_iter, skip, num):
  keys = fold_in_each(key, np.arange(num))
  refs = jax.tree_util.tree_map(lambda a: np.broadcast_to(a, (num,) + a.shape), ref)
  # Skipped (diverged, possibly NaN) models are matched as copies of the reference, and
  # their result discarded: NaN costs must never reach the solver.
  usable = np.array([k not in set(skip) for k in range(num)])
  others = jax.tree_util.tree_map(
      lambda a, r: np.where(usable.reshape((-1,) + (1,) * (a.ndim - 1)), a, r), host, refs)
  dev_perms, dev_sweeps = match_many(spec, sizes, keys, refs, others, max_iter)
  perms, objective, sweeps = [], [], []
  for k in range(num):
    if k == reference or k in set(skip):
      perms.append(identity_permutation(sizes))
      objective.append([])
      sweeps.append(0)
    else:
      pk = {p: np.asarray(v[k]) for p, v in dev_perms.items()}
      perms.append(pk)
      objective.append([matching_objective(spec, pk, ref, take(host, k))])
      sweeps.append(int(dev_sweeps[k]))
  return ZooAlignment(permute_zoo(spec, perms, host), perms, objective, reference, sweeps)


def align_pairs(key, spec: PermutationSpec, params_stack, pairs, max_iter: int = 50,
                matcher: str = "host", plan: Optional[ExecutionPlan] = None):
  """Model j of every pair (i, j) weight-matched directly to model i.

  Returns a stack `(P, ...)`: entry p is model pairs[p, 1] permuted onto pairs[p, 0].
  Pair p's layer orders come from `fold_in(key, p)`. `matcher='device'` matches every
  pair at once with the jittable solver; 'auto' the plan's.
  """
  matcher = _check_matcher(matcher, plan)
  host = to_numpy(params_stack)
  validate_spec(spec, host, batch_dims=1)
  pairs = np.asarray(pairs).reshape(-1, 2)
  if matcher == "device":
    keys = fold_in_each(key, np.arange(len(pairs)))
    side = lambda col: take(host, pairs[:, col])
    perms, _ = match_many(spec, perm_sizes(spec, take(host, 0)), keys, side(0), side(1), max_iter)
    per_pair = [{p: np.asarray(v[q]) for p, v in perms.items()} for q in range(len(pairs))]
    return to_numpy(permute_zoo(spec, per_pair, side(1)))
  out = []
  for p, (i, j) in enumerate(np.asarray(pairs)):
    res = weight_matching(jax.random.fold_in(key, p), spec, take(host, i), take(host, j), max_iter)
    out.append(apply_permutation(spec, res.perm, take(host, j)))
  return stack(out)


@register("weight", "weight matching of every model to the reference (the study's method)",
          uses=("seed", "max_iter", "signs"),
          settings=(Setting("matcher", "auto", "Weight matching one model at a time with scipy "
                            "(host), all models at once with a jitted solver (device, "
                            "float32), or auto: device on a GPU or TPU, host on a CPU.",
                            MATCHERS),))
def _align_by_weights(task: AlignTask) -> Alignment:
  matcher = _check_matcher(task.settings.matcher, task.plan)
  res = align_zoo(task.key, task.spec, task.params, task.reference, task.settings.max_iter,
                  task.skip, matcher)
  return Alignment(res.perms, {"sweeps": res.sweeps, "objective": res.objective,
                               "matcher": matcher})
