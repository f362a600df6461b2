"""Softmax temperature calibration of the networks along a line (after Ito et al.: wide
networks may connect with no alignment once each interpolated net's temperature is fit).

For each network on a line, one temperature `T > 0` minimises the mean cross-entropy of
`softmax(logits / T)` (`sigmoid(z / T)` for one logit) on held-out training rows; the
calibrated loss is the split's mean loss at that temperature. Accuracy does not change
(`T > 0` keeps every argmax and every sign).

The mean loss is convex in `beta = 1 / T` (a log-sum-exp of `beta * z` less a linear
term), hence unimodal in `log beta`: a golden-section search over `log beta` in
`[-log T_MAX, -log T_MIN]` finds its minimum to float precision in `ITERS` steps. A fit
at the bound means the loss would fall further outside it (logits nearly constant).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax import host_arrays
from lmc_jax.host_arrays import to_device
from lmc_jax.lmc.interpolation import Curves, interpolate
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct

T_MIN, T_MAX = 1e-2, 1e2
ITERS = 64  # golden-section steps: the bracket shrinks by 0.618 each, 9.2 * 0.618^64 ~ 4e-13
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def mean_loss(logits, labels, beta):
  """Mean cross-entropy of `logits` `(n, C)` scaled by `beta`, on int `labels` `(n,)`."""
  return jnp.mean(loss_and_correct(logits * beta, labels)[0])


def fit_temperature(logits, labels):
  """The temperature `T` in `[T_MIN, T_MAX]` minimising the mean cross-entropy of
  `logits / T` `(n, C)` on `labels` `(n,)`; jittable and vmappable."""
  logits = logits.astype(jnp.float32)
  f = lambda u: mean_loss(logits, labels, jnp.exp(u))

  def step(_, bracket):
    lo, hi = bracket
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    left = f(a) <= f(b)  # the minimum lies in [lo, b], else in [a, hi]
    return jnp.where(left, lo, a), jnp.where(left, b, hi)
  lo, hi = jax.lax.fori_loop(0, ITERS, step, (jnp.float32(-math.log(T_MAX)),
                                              jnp.float32(-math.log(T_MIN))))
  return jnp.exp(-(lo + hi) / 2)


@functools.partial(jax.jit, static_argnums=0)
def _line(model, params_i, params_j, alphas, x_fit, y_fit, x_eval, y_eval):
  """(T, calibrated loss, loss at T = 1, acc), each `(A,)`, along one line."""
  def one(alpha):
    mixed = interpolate(params_i, params_j, alpha)
    t = fit_temperature(apply_eval(model, mixed, x_fit), y_fit)
    logits = apply_eval(model, mixed, x_eval).astype(jnp.float32)
    loss, correct = loss_and_correct(logits, y_eval)
    return t, mean_loss(logits, y_eval, 1.0 / t), jnp.mean(loss), jnp.mean(correct)
  return jax.lax.map(one, alphas)


class CalibratedCurves(NamedTuple):
  curves: Curves  # loss at each network's own temperature; acc as measured
  raw_loss: np.ndarray  # (P, A): loss at T = 1 (the plain curves, a check)
  temperature: np.ndarray  # (P, A)


def calibrated_sweep(model, params_stack, pairs, alphas, x_fit, y_fit, x_eval,
                     y_eval) -> CalibratedCurves:
  """Along every line (pairs `(P, 2)`, alphas `(A,)`) of the stacked zoo `params_stack`:
  each network's temperature fit on `(x_fit, y_fit)` and its loss at that temperature on
  `(x_eval, y_eval)`. One jitted line at a time, alphas one after another (a network's
  activations on the whole split at once)."""
  pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
  alphas = np.asarray(alphas, np.float64)
  out = np.zeros((4, len(pairs), len(alphas)))
  args = [to_device(a) for a in (alphas.astype(np.float32), x_fit, y_fit, x_eval, y_eval)]
  for p, (i, j) in enumerate(pairs):
    ends = [jax.tree_util.tree_map(lambda v, k=k: to_device(host_arrays.index(v, k)),
                                   params_stack) for k in (i, j)]
    out[:, p] = np.asarray(jnp.stack(_line(model, *ends, *args)), np.float64)
  t, loss, raw, acc = out
  return CalibratedCurves(Curves(alphas, pairs, loss, acc), raw, t)
