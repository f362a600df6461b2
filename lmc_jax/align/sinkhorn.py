"""Sinkhorn matching (Pena et al., 2023, "Re-basin via implicit Sinkhorn differentiation"):
learn soft permutations of model B that lower the loss along its line to model A.

Each hidden layer's permutation is relaxed to a doubly stochastic matrix
`P = sinkhorn(logits)` (log-domain Sinkhorn normalisation), applied to B as
`apply_soft_permutation`. The logits start at B's weight-matching permutation (a soft copy
of it) and are trained with Adam on the expected loss of the interpolated network, alpha
drawn uniformly from [0, 1] each step (or alpha = 1/2: the midpoint). At the end each `P`
is rounded to the permutation with the largest total weight (a linear assignment).
All models of a zoo train at once: `vmap` over the models, `lax.scan` over the steps (a
host loop over jitted steps where the plan says so: `ExecutionPlan.host_loops`).
"""
from __future__ import annotations

import functools
from typing import Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.align.weight import align_zoo
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_or_default, run_steps
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.nn.optim import cached_adam
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_soft_permutation,
  spec_from_key,
  spec_key,
  without_signs,
)
from lmc_jax.tree_utils import fold_in_each

OBJECTIVES = ("expected", "midpoint")


def log_sinkhorn(logits, iters: int = 20):
  """Doubly stochastic `(n, n)` matrix from `logits` `(n, n)`: alternate row and column
  normalisation in log space, `iters` times each (columns last, so columns sum to 1)."""
  def body(_, log_p):
    log_p = log_p - jax.nn.logsumexp(log_p, axis=1, keepdims=True)
    return log_p - jax.nn.logsumexp(log_p, axis=0, keepdims=True)
  return jnp.exp(jax.lax.fori_loop(0, iters, body, logits))


def round_to_permutation(p: np.ndarray) -> np.ndarray:
  """The permutation `perm` (`perm[i]` = column of row i) with the largest `sum P[i, perm[i]]`."""
  _, cols = linear_sum_assignment(np.asarray(p, np.float64), maximize=True)
  return cols


def start_logits(perm: np.ndarray, margin: float = 5.0) -> np.ndarray:
  """Logits whose Sinkhorn matrix is close to the permutation `perm`: `log(n) + margin` on
  the permutation's entries, 0 elsewhere (so they hold about 1 - exp(-margin) of each row)."""
  n = len(perm)
  logits = np.zeros((n, n), np.float32)
  logits[np.arange(n), perm] = np.log(n) + margin
  return logits


class SinkhornResult(NamedTuple):
  perms: List[Dict[str, np.ndarray]]  # one per model
  soft: Dict[str, np.ndarray]  # {p: (models, n, n)} final doubly stochastic matrices
  losses: np.ndarray  # (steps, models) training loss of each step


@functools.lru_cache(maxsize=16)
def _step_fn(model, spec_items, iters, objective, tx):
  """`step((logits, opt_state), s, params_a, params_b, x, y, keys) -> (carry, loss (m,))`:
  one Adam step of every model's logits on batch `s` of `(x, y)`."""
  spec = spec_from_key(spec_items)

  def step(carry, s, params_a, params_b, x, y, keys):
    def loss_one(logits, b, xb, yb, alpha):
      mats = {p: log_sinkhorn(p_logits, iters) for p, p_logits in logits.items()}
      soft_b = apply_soft_permutation(spec, mats, b)
      mixed = jax.tree_util.tree_map(lambda u, v: (1 - alpha) * u + alpha * v, params_a, soft_b)
      loss, _ = loss_and_correct(apply_eval(model, mixed, xb), yb)
      return jnp.mean(loss)

    logits, opt_state = carry
    k = jax.random.fold_in(keys[0], s)
    idx = jax.random.choice(jax.random.fold_in(k, 0), x.shape[0], (min(256, x.shape[0]),),
                            replace=False)
    alpha = (jnp.full((keys.shape[0],), 0.5) if objective == "midpoint"
             else jax.vmap(lambda kk: jax.random.uniform(jax.random.fold_in(kk, s)))(keys))
    grad = jax.vmap(jax.value_and_grad(loss_one), in_axes=(0, 0, None, None, 0))
    loss, g = grad(logits, params_b, x[idx], y[idx], alpha)
    updates, opt_state = jax.vmap(tx.update)(g, opt_state, logits)
    return (optax.apply_updates(logits, updates), opt_state), loss
  return step


def _train(model, spec_items, steps, iters, objective, tx, from_host, logits, params_a,
           params_b, x, y, keys):
  """Every step, a `lax.scan` (jitted whole: `_train_jit`) or with `from_host` one jitted
  call each; returns (final matrices, losses `(steps, m)`)."""
  step = _step_fn(model, spec_items, iters, objective, tx)
  carry = (logits, jax.vmap(tx.init)(logits))
  (logits, _), losses = run_steps(step, carry, jnp.arange(steps, dtype=jnp.int32), params_a,
                                  params_b, x, y, keys, from_host=from_host)
  if losses is None:  # no steps
    losses = jnp.zeros((0, keys.shape[0]))
  return _matrices_jit(logits, iters), losses


_train_jit = jax.jit(_train, static_argnums=(0, 1, 2, 3, 4, 5, 6))


def _matrices(logits, iters):
  return jax.vmap(lambda model_logits: {p: log_sinkhorn(v, iters)
                                        for p, v in model_logits.items()})(logits)


_matrices_jit = jax.jit(_matrices, static_argnums=1)


def sinkhorn_matching(key, model, spec: PermutationSpec, params_a, params_b_stack, start_perms,
                      x, y, steps: int = 50, lr: float = 0.1, iters: int = 20,
                      objective: str = "expected",
                      plan: Optional[ExecutionPlan] = None) -> SinkhornResult:
  """Permutations of every model of `params_b_stack` `(m, ...)` onto `params_a` (one model),
  learned from their starting permutations `start_perms` (a list of m dicts) on training
  data `(x, y)`, run as `plan` says."""
  if objective not in OBJECTIVES:
    raise LmcError(f"Unknown Sinkhorn objective {objective!r}; use one of {', '.join(OBJECTIVES)}.")
  logits = {p: np.stack([start_logits(np.asarray(sp[p])) for sp in start_perms])
            for p in spec.perm_to_axes}
  m = len(start_perms)
  keys = fold_in_each(key, np.arange(m))
  params_a = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), params_a)
  spec_items = spec_key(spec)  # hashable: a static argument
  from_host = plan_or_default(plan).host_loops(params_a)
  train = _train if from_host else _train_jit
  mats, losses = train(model, spec_items, int(steps), int(iters), objective,
                       cached_adam(float(lr)), from_host, logits, params_a, params_b_stack,
                       jnp.asarray(x), jnp.asarray(y), keys)
  mats = {p: np.asarray(v) for p, v in mats.items()}
  perms = [{p: round_to_permutation(v[k]) for p, v in mats.items()} for k in range(m)]
  return SinkhornResult(perms, mats, np.asarray(losses))


@register("sinkhorn", "Sinkhorn soft permutations started from weight matching, on training "
          "data", uses=("seed", "max_iter", "fit_samples"),
          settings=(Setting("sinkhorn_steps", 50, "Sinkhorn matching steps (batches of 256).",
                            low=1),
                    Setting("sinkhorn_lr", 1.0, "Sinkhorn matching Adam learning rate (on the "
                            "logits).", above=0),
                    Setting("sinkhorn_objective", "expected", "Sinkhorn loss: at a random alpha "
                            "each step (expected) or at alpha 1/2.", OBJECTIVES)))
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
