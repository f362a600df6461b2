"""Straight-through estimator matching (Ainsworth et al., Git Re-Basin, their learned method).

Keep a free copy `proxy` of the weights (started at model A). Each step projects it onto
model B's permutations (weight matching of B to the proxy, `pi`), and takes a gradient step
on the loss of the midpoint `(theta_A + pi(theta_B)) / 2`, with the gradient passed straight
through the projection to the proxy: the forward pass uses `pi(theta_B)`, the backward pass
treats it as `proxy`. The permutation of the last step is the result, unless the weight-
matching permutation it started from has the lower midpoint loss on the training data (then
that one: the method never returns a worse midpoint than weight matching on the data it saw).
"""
from __future__ import annotations

import functools
from typing import Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.align.weight import weight_matching
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.evaluation import metrics_one, to_batches
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.nn.optim import cached_adam, compiled_init
from lmc_jax.symmetry.spec import apply_permutation


class SteResult(NamedTuple):
  perm: Dict[str, np.ndarray]
  midpoint_loss: float  # training loss of the midpoint with `perm`
  start_midpoint_loss: float  # the same with the weight-matching permutation it started from
  losses: list  # midpoint loss of each step's batch


def _midpoint(a, b):
  return jax.tree_util.tree_map(lambda u, v: 0.5 * (u + v), a, b)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _step(model, tx, proxy, opt_state, params_a, projected, x, y):
  def loss_fn(proxy):
    # Forward: the projection; backward: the identity onto the proxy.
    b = jax.tree_util.tree_map(lambda t, q: t + jax.lax.stop_gradient(q - t), proxy, projected)
    loss, _ = loss_and_correct(apply_eval(model, _midpoint(params_a, b), x), y)
    return jnp.mean(loss)
  loss, grads = jax.value_and_grad(loss_fn)(proxy)
  updates, opt_state = tx.update(grads, opt_state, proxy)
  return optax.apply_updates(proxy, updates), opt_state, loss


@functools.partial(jax.jit, static_argnums=0)
def _midpoint_loss(model, params_a, params_b, batches):
  return metrics_one(model, _midpoint(params_a, params_b), batches)[0]


def ste_matching(key, model, spec, params_a, params_b, x, y, steps: int = 50, lr: float = 1e-3,
                 batch_size: int = 256, max_iter: int = 50) -> SteResult:
  """Permutation of B found by the straight-through estimator on training data `(x, y)`."""
  params_a = jax.tree_util.tree_map(lambda v: to_device(v, jnp.float32), params_a)
  params_b = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float32), params_b)
  start = weight_matching(jax.random.fold_in(key, 0), spec, params_a, params_b, max_iter).perm
  tx = cached_adam(float(lr))
  proxy, perm = params_a, start
  opt_state = compiled_init(tx)(proxy)
  b = min(batch_size, len(y))
  losses = []
  for s in range(steps):
    if s > 0:
      perm = weight_matching(jax.random.fold_in(key, s), spec, proxy, params_b, max_iter,
                             init_perm=perm).perm
    idx = np.asarray(jax.random.choice(jax.random.fold_in(key, 10 ** 6 + s), len(y), (b,),
                                       replace=False))
    projected = apply_permutation(spec, perm, params_b)
    proxy, opt_state, loss = _step(model, tx, proxy, opt_state, params_a, projected,
                                   to_device(x[idx]), to_device(y[idx]))
    losses.append(float(loss))
  if steps > 0:  # the projection of the final proxy
    perm = weight_matching(jax.random.fold_in(key, steps), spec, proxy, params_b, max_iter,
                           init_perm=perm).perm
  batches = to_batches(np.asarray(x), np.asarray(y))
  mid = lambda pm: float(_midpoint_loss(model, params_a, apply_permutation(spec, pm, params_b),
                                        batches))
  end_loss, start_loss = mid(perm), mid(start)
  if start_loss < end_loss:
    perm, end_loss = start, start_loss
  return SteResult({p: np.asarray(v) for p, v in perm.items()}, end_loss, start_loss, losses)


@register("ste", "straight-through estimator matching to the reference, on training data",
          uses=("seed", "max_iter", "fit_samples", "signs"),
          settings=(Setting("ste_steps", 50, "Straight-through estimator steps (batches of 256).",
                            low=1),
                    Setting("ste_lr", 0.1, "Straight-through estimator Adam learning rate.",
                            above=0)))
def _align_by_ste(task: AlignTask) -> Alignment:
  s, ref, results = task.settings, task.member(task.reference), {}

  def one(k):
    results[k] = ste_matching(jax.random.fold_in(task.key, k), task.model, task.spec, ref,
                              task.member(k), task.fit_x, task.fit_y, s.ste_steps, s.ste_lr,
                              max_iter=s.max_iter)
    return results[k].perm
  perms = task.star(one)
  return Alignment(perms, {
      "midpoint_loss": {k: r.midpoint_loss for k, r in results.items()},
      "start_midpoint_loss": {k: r.start_midpoint_loss for k, r in results.items()}})
