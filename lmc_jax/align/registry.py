"""Every alignment method behind one call: `align_by(name, ...)` puts a zoo in one frame.

Names (`--align` of experiments.barrier):
  weight      weight matching of every model to the reference (the study's method)
  activation  activation matching to the reference, on training inputs
  ste         straight-through estimator matching to the reference, on training data
  sinkhorn    Sinkhorn soft permutations started from weight matching, on training data
  mergemany   all models matched jointly to their common mean (no reference favoured)
  exact       the epsilon-optimal permutation onto the reference, by exhaustive search
              over the split the curves are measured on (narrow nets only)
Every method returns the zoo with each model permuted (identity at the reference and at
models left out), so the same all-pairs sweep measures them all.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, NamedTuple, Sequence

import jax
import numpy as np

from lmc_jax.align.activation import activation_matching
from lmc_jax.errors import LmcError
from lmc_jax.align.exact import exact_alignment
from lmc_jax.align.merge_many import merge_many
from lmc_jax.align.spec import PermutationSpec, identity_permutation, perm_sizes, permute_zoo
from lmc_jax.align.sinkhorn import sinkhorn_matching
from lmc_jax.align.ste import ste_matching
from lmc_jax.align.weight import align_zoo
from lmc_jax.tree_utils import take, to_numpy

METHODS = ("weight", "activation", "ste", "sinkhorn", "mergemany", "exact")


@dataclasses.dataclass(frozen=True)
class MethodSettings:
  """The knobs of every method, recorded with its results."""
  seed: int = 0  # layer orders, batches, alphas
  max_iter: int = 50  # weight-matching sweeps (weight, ste, mergemany, sinkhorn's start)
  matcher: str = "host"  # weight: scipy on the host, or the jitted solver
  fit_samples: int = 2048  # training inputs for activation statistics (activation, REPAIR)
  ste_steps: int = 50
  ste_lr: float = 0.1
  sinkhorn_steps: int = 50
  sinkhorn_lr: float = 1.0
  sinkhorn_objective: str = "expected"  # or 'midpoint'
  mergemany_rounds: int = 100
  exact_max_tflop: float = 1.0

  def for_method(self, name: str) -> dict:
    """The settings that affect method `name` (what its barrier.json entry records)."""
    keys = {"weight": ("seed", "max_iter", "matcher"), "activation": ("fit_samples",),
            "ste": ("seed", "max_iter", "ste_steps", "ste_lr"),
            "sinkhorn": ("seed", "max_iter", "sinkhorn_steps", "sinkhorn_lr",
                         "sinkhorn_objective"),
            "mergemany": ("seed", "max_iter", "mergemany_rounds"),
            "exact": ("exact_max_tflop",)}[name]
    return {k: getattr(self, k) for k in keys}


class MethodResult(NamedTuple):
  params: dict  # the zoo, every model permuted into the shared frame
  perms: List[Dict[str, np.ndarray]]  # one per model
  info: dict  # what the method reports about itself (JSON-ready)
  seconds: float


def check_methods(names: Sequence[str]) -> List[str]:
  unknown = [n for n in names if n not in METHODS]
  if unknown or not names:
    raise LmcError(f"Unknown alignment method(s) {', '.join(unknown) or '(none given)'}; use "
                   f"one or more of {', '.join(METHODS)}, comma-separated.")
  return list(dict.fromkeys(names))


def _star(params, reference: int, skip, sizes, align_one: Callable[[int], dict]):
  """Permutations of every model onto the reference, one `align_one(k)` call per model."""
  n = jax.tree_util.tree_leaves(params)[0].shape[0]
  return [identity_permutation(sizes) if k == reference or k in skip else align_one(k)
          for k in range(n)]


def align_by(name: str, model, spec: PermutationSpec, params, reference: int, skip,
             fit_x: np.ndarray, fit_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
             settings: MethodSettings = MethodSettings()) -> MethodResult:
  """Aligns the stacked zoo `params` by method `name` (see METHODS).

  `fit_x, fit_y` are training data (activation, ste, sinkhorn); `eval_x, eval_y` the split
  the curves are measured on (exact). Models in `skip` keep the identity.
  """
  check_methods([name])
  skip = set(skip)
  host = to_numpy(params)
  ref = take(host, reference)
  sizes = perm_sizes(spec, ref)
  key = jax.random.key(settings.seed)
  fit_x, fit_y = fit_x[:settings.fit_samples], fit_y[:settings.fit_samples]
  start = time.perf_counter()
  info: dict = {}
  if name == "weight":
    res = align_zoo(key, spec, params, reference, settings.max_iter, skip, settings.matcher)
    perms = res.perms
    info = {"sweeps": res.sweeps, "objective": res.objective}
  elif name == "activation":
    perms = _star(host, reference, skip, sizes,
                  lambda k: activation_matching(model, spec, ref, take(host, k), fit_x))
  elif name == "ste":
    results = {}

    def one(k):
      results[k] = ste_matching(jax.random.fold_in(key, k), model, spec, ref, take(host, k), fit_x,
                                fit_y, settings.ste_steps, settings.ste_lr,
                                max_iter=settings.max_iter)
      return results[k].perm
    perms = _star(host, reference, skip, sizes, one)
    info = {"midpoint_loss": {k: r.midpoint_loss for k, r in results.items()},
            "start_midpoint_loss": {k: r.start_midpoint_loss for k, r in results.items()}}
  elif name == "sinkhorn":
    start_perms = align_zoo(key, spec, params, reference, settings.max_iter, skip).perms
    movers = [k for k in range(len(start_perms)) if k != reference and k not in skip]
    perms = list(start_perms)
    if movers:
      stacked = take(host, np.asarray(movers))
      res = sinkhorn_matching(key, model, spec, ref, stacked, [start_perms[k] for k in movers],
                              fit_x, fit_y, settings.sinkhorn_steps, settings.sinkhorn_lr,
                              objective=settings.sinkhorn_objective)
      for k, p in zip(movers, res.perms):
        perms[k] = p
      info = {"first_step_loss": float(np.mean(res.losses[0])),
              "last_step_loss": float(np.mean(res.losses[-1])),
              "changed_from_weight_matching": [
                  k for k, p in zip(movers, res.perms)
                  if any(not np.array_equal(p[q], start_perms[k][q]) for q in p)]}
  elif name == "mergemany":
    res = merge_many(key, spec, params, reference, skip, settings.mergemany_rounds,
                     settings.max_iter)
    perms = res.perms
    info = {"rounds": res.rounds, "changed_per_round": [len(c) for c in res.changed],
            "objective": res.objective}
  else:  # exact
    found = {}

    def one(k):
      found[k] = exact_alignment(model, spec, ref, take(host, k), eval_x, eval_y,
                                 settings.exact_max_tflop)
      return found[k].perm
    perms = _star(host, reference, skip, sizes, one)
    info = {"epsilon": {k: r.epsilon for k, r in found.items()}}
  seconds = time.perf_counter() - start
  return MethodResult(permute_zoo(spec, perms, params), perms, info, seconds)
