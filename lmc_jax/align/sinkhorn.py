"""Sinkhorn matching (Pena et al., 2023, "Re-basin via implicit Sinkhorn differentiation"):
learn soft permutations of model B that bring it to model A.

Each hidden layer's permutation is relaxed to a doubly stochastic matrix
`P = sinkhorn(logits)` (log-domain Sinkhorn normalisation, `sinkhorn_projection`), applied to
B as `apply_soft_permutation`. The logits start at B's weight-matching permutation (a soft
copy of it) and are trained with Adam on one of three objectives:
- `expected`: the loss of the interpolated network on a batch of 256 training inputs, alpha
  drawn uniformly from [0, 1] each step;
- `midpoint`: the same at alpha = 1/2;
- `distance`: no data, the squared distance `|theta_A - P(theta_B)|^2` over every weight,
  relative to `|theta_A|^2` (Pena et al.'s weight-based loss); on a CPU it runs in numpy
  on the host with its gradients written out (`sinkhorn_distance`: nothing to compile).
At the end each `P` is rounded to the permutation with the largest total weight (a linear
assignment). All models of a zoo train at once: `vmap` over the models, a fixed number of
steps in one jitted `lax.scan`, or, for the data objectives where the plan says so
(`ExecutionPlan.host_loops`: a convolution on one CPU device), a host loop over one jitted
step. A data objective's step is one forward and backward pass of the network, which is
most of its time; the distance objective never runs the network (BUILD_NOTES.md, "Sinkhorn
as a compiled iteration").
"""
from __future__ import annotations

import functools
from typing import Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.align.sinkhorn_distance import distance_matching
from lmc_jax.align.sinkhorn_projection import (
  log_sinkhorn,
  project_all,
  round_to_permutation,
  start_logits,
)
from lmc_jax.align.weight import align_zoo
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_or_default, run_steps
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.nn.optim import cached_adam, compiled_init
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_soft_permutation,
  spec_from_key,
  spec_key,
  without_signs,
)
from lmc_jax.tree_utils import fold_in_each

__all__ = ["OBJECTIVES", "SinkhornResult", "log_sinkhorn", "project_all",
           "round_to_permutation", "sinkhorn_matching", "start_logits"]

OBJECTIVES = ("expected", "midpoint", "distance")
DATA_FREE = ("distance",)


def _project_each(logits, iters):
  """`project_all` one matrix at a time (the form before `project_all`; the benchmark's
  baseline)."""
  return {p: log_sinkhorn(v, iters) for p, v in logits.items()}


class SinkhornResult(NamedTuple):
  perms: List[Dict[str, np.ndarray]]  # one per model
  soft: Dict[str, np.ndarray]  # {p: (models, n, n)} final doubly stochastic matrices
  losses: np.ndarray  # (steps, models) training loss of each step


@functools.lru_cache(maxsize=16)
def _step_fn(model, spec_items, iters, objective, tx, grouped=True):
  """`step((logits, opt_state), s, params_a, params_b, x, y, keys) -> (carry, loss (m,))`:
  one Adam step of every model's logits (on batch `s` of `(x, y)` for a data objective).
  `grouped=False` projects each matrix on its own (the benchmark's baseline)."""
  spec = spec_from_key(spec_items)
  project = project_all if grouped else _project_each

  def distance_one(logits, b, a, xb, yb, alpha):
    soft_b = apply_soft_permutation(spec, project(logits, iters), b)
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(soft_b))
    norm = sum(jnp.sum(u ** 2) for u in jax.tree_util.tree_leaves(a))
    return sum(jnp.sum((u - v) ** 2) for u, v in pairs) / norm

  def data_one(logits, b, a, xb, yb, alpha):
    soft_b = apply_soft_permutation(spec, project(logits, iters), b)
    mixed = jax.tree_util.tree_map(lambda u, v: (1 - alpha) * u + alpha * v, a, soft_b)
    loss, _ = loss_and_correct(apply_eval(model, mixed, xb), yb)
    return jnp.mean(loss)

  def step(carry, s, params_a, params_b, x, y, keys):
    logits, opt_state = carry
    m = keys.shape[0]
    if objective in DATA_FREE:
      loss_one, xb, yb, alpha = distance_one, None, None, jnp.zeros((m,))
    else:
      k = jax.random.fold_in(keys[0], s)
      idx = jax.random.choice(jax.random.fold_in(k, 0), x.shape[0], (min(256, x.shape[0]),),
                              replace=False)
      loss_one, xb, yb = data_one, x[idx], y[idx]
      alpha = (jnp.full((m,), 0.5) if objective == "midpoint"
               else jax.vmap(lambda kk: jax.random.uniform(jax.random.fold_in(kk, s)))(keys))
    grad = jax.vmap(jax.value_and_grad(loss_one), in_axes=(0, 0, None, None, None, 0))
    loss, g = grad(logits, params_b, params_a, xb, yb, alpha)
    updates, opt_state = jax.vmap(tx.update)(g, opt_state, logits)
    return (optax.apply_updates(logits, updates), opt_state), loss
  return step


def _train(model, spec_items, steps, iters, objective, tx, from_host, grouped, logits,
           params_a, params_b, x, y, keys):
  """Every step, a `lax.scan` (jitted whole: `_train_jit`) or with `from_host` one jitted
  call each; returns (final matrices `{p: (m, n, n)}`, losses `(steps, m)`)."""
  step = _step_fn(model, spec_items, iters, objective, tx, grouped)
  carry = (logits, compiled_init(tx, batched=True)(logits))
  (logits, _), losses = run_steps(step, carry, jnp.arange(steps, dtype=jnp.int32), params_a,
                                  params_b, x, y, keys, from_host=from_host)
  if losses is None:  # no steps
    losses = jnp.zeros((0, keys.shape[0]))
  return _matrices_jit(logits, iters, grouped), losses


_train_jit = jax.jit(_train, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))


def _matrices(logits, iters, grouped):
  project = project_all if grouped else _project_each
  return jax.vmap(lambda model_logits: project(model_logits, iters))(logits)


_matrices_jit = jax.jit(_matrices, static_argnums=(1, 2))


def sinkhorn_matching(key, model, spec: PermutationSpec, params_a, params_b_stack, start_perms,
                      x=None, y=None, steps: int = 50, lr: float = 0.1, iters: int = 20,
                      objective: str = "expected", plan: Optional[ExecutionPlan] = None,
                      grouped: bool = True) -> SinkhornResult:
  """Permutations of every model of `params_b_stack` `(m, ...)` onto `params_a` (one model),
  learned from their starting permutations `start_perms` (a list of m dicts) by `steps`
  Adam steps on `objective` (the data objectives on training data `x` `(N, d)`, `y`
  `(N,)`), run as `plan` says. `grouped=False`: each matrix projected on its own, as
  before `project_all` (the same numbers to float32 rounding; the benchmark's baseline)."""
  if objective not in OBJECTIVES:
    raise LmcError(f"Unknown Sinkhorn objective {objective!r}; use one of {', '.join(OBJECTIVES)}.")
  data = objective not in DATA_FREE
  if data and (x is None or y is None):
    raise LmcError(f"Sinkhorn objective {objective!r} learns on training data and was given "
                   "none; pass x and y, or use the objective distance.")
  logits = {p: np.stack([start_logits(np.asarray(sp[p])) for sp in start_perms])
            for p in spec.perm_to_axes}
  m = len(start_perms)
  if not data and not plan_or_default(plan).accelerator:
    return _distance_on_host(spec, params_a, params_b_stack, logits, m, steps, lr, iters)
  keys = fold_in_each(key, np.arange(m))
  params_a = jax.tree_util.tree_map(lambda v: to_device(v, jnp.float32), params_a)
  spec_items = spec_key(spec)  # hashable: a static argument
  # The distance objective runs no network, so nothing is slow inside a scan.
  from_host = data and plan_or_default(plan).host_loops(params_a)
  train = _train if from_host else _train_jit
  x, y = (to_device(x), to_device(y)) if data else (None, None)
  mats, losses = train(model, spec_items, int(steps), int(iters), objective,
                       cached_adam(float(lr)), from_host, bool(grouped), logits, params_a,
                       params_b_stack, x, y, keys)
  mats = {p: np.asarray(v) for p, v in mats.items()}
  perms = [{p: round_to_permutation(v[k]) for p, v in mats.items()} for k in range(m)]
  return SinkhornResult(perms, mats, np.asarray(losses))


def _distance_on_host(spec, params_a, params_b_stack, logits, m, steps, lr, iters
                      ) -> SinkhornResult:
  """The distance objective model by model in numpy (`sinkhorn_distance`): on a CPU it
  needs no compilation, which costs far more there than its steps."""
  found = [distance_matching(spec, params_a, jax.tree_util.tree_map(lambda v: v[k],
                                                                    params_b_stack),
                             {p: v[k] for p, v in logits.items()}, int(steps), float(lr),
                             int(iters)) for k in range(m)]
  mats = {p: np.stack([f[0][p] for f in found]).astype(np.float32) for p in logits}
  perms = [{p: round_to_permutation(f[0][p]) for p in logits} for f in found]
  return SinkhornResult(perms, mats, np.stack([f[1] for f in found], axis=1))


@register("sinkhorn", "Sinkhorn soft permutations started from weight matching, learned on "
          "training data (or on the weights: sinkhorn_objective=distance)",
          uses=("seed", "max_iter", "fit_samples"),
          settings=(Setting("sinkhorn_steps", 50, "Sinkhorn matching steps (batches of 256).",
                            low=1),
                    Setting("sinkhorn_lr", 1.0, "Sinkhorn matching Adam learning rate (on the "
                            "logits).", above=0),
                    Setting("sinkhorn_objective", "expected", "Sinkhorn loss: the "
                            "interpolated network's on training data at a random alpha each "
                            "step (expected) or at alpha 1/2 (midpoint), or, without data and "
                            "the network, the squared distance of the weights (distance).",
                            OBJECTIVES)))
def _align_by_sinkhorn(task: AlignTask) -> Alignment:
  s = task.settings
  task = task._replace(spec=without_signs(task.spec))  # a soft permutation has no signs
  start = align_zoo(task.key, task.spec, task.params, task.reference, s.max_iter, task.skip).perms
  perms, movers = list(start), task.movers
  if not movers:
    return Alignment(perms, {})
  res = sinkhorn_matching(task.key, task.model, task.spec, task.member(task.reference),
                          task.member(np.asarray(movers)), [start[k] for k in movers],
                          task.fit_x, task.fit_y, s.sinkhorn_steps, s.sinkhorn_lr,
                          objective=s.sinkhorn_objective, plan=task.plan)
  for k, p in zip(movers, res.perms):
    perms[k] = p
  return Alignment(perms, {
      "first_step_loss": float(np.mean(res.losses[0])),
      "last_step_loss": float(np.mean(res.losses[-1])),
      "changed_from_weight_matching": [
          k for k, p in zip(movers, res.perms)
          if any(not np.array_equal(p[q], start[k][q]) for q in p)]})
