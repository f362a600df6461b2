"""Optimizers and learning-rate schedules, configured to match their PyTorch namesakes.

The study's code used PyTorch; each optax chain here reproduces the PyTorch update rule
(hyper-parameter defaults and where weight decay enters), so its settings carry over.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lmc_jax.config import OPTIMIZERS, SCHEDULES, OptimConfig
from lmc_jax.errors import LmcError

# Optimizers whose momentum term OneCycleLR can cycle: torch refuses Adagrad (it has none).
CYCLE_MOMENTUM_OPTIMIZERS = ("adamw", "sgd", "rmsprop")
# OneCycleLR's defaults.
PCT_START, DIV_FACTOR, FINAL_DIV_FACTOR = 0.3, 25.0, 1e4
BASE_MOMENTUM, MAX_MOMENTUM = 0.85, 0.95


def torch_onecycle(total_steps: int, start: float, mid: float, end: float,
                   pct_start: float = PCT_START) -> optax.Schedule:
  """torch's OneCycleLR rule (two phases, cos annealing) for any quantity.

  Cosine from `start` at step 0 to `mid` at step `pct_start * total_steps - 1` (a float),
  then to `end` at step `total_steps - 1`, held there after that (torch goes one step on,
  slightly past `end`, then raises).
  """
  total_steps = max(int(total_steps), 1)
  end1 = float(pct_start * total_steps) - 1  # as torch computes it, in float64
  end2 = float(total_steps - 1)

  def schedule(count):
    step = jnp.minimum(jnp.asarray(count, jnp.float32), end2)
    first = step <= end1
    # torch's b + (a - b) / 2 * (1 + cos(pi * pct)), written as b + (a - b) * sin^2(pi / 2 *
    # (1 - pct)) with the fraction left (1 - pct) computed directly: in float32 the cos form
    # loses ~1% of the tiny final learning rates to cancellation.
    left = jnp.where(first, (end1 - step) / (end1 if end1 > 0 else 1.0),
                     (end2 - step) / (end2 - end1))
    a, b = jnp.where(first, start, mid), jnp.where(first, mid, end)
    return b + (a - b) * jnp.sin(math.pi / 2 * left) ** 2

  return schedule


def make_schedule(name: str, lr: float, total_steps: int, peak_lr=None) -> optax.Schedule:
  """Per-step learning rate.

  cosine: from `lr` down to 0 over `total_steps` (CosineAnnealingLR with T_max = steps).
  onecycle: OneCycleLR's defaults as optax has them: warm up from peak/25 to `peak_lr`
    (default `lr`) at step int(0.3 * steps), then anneal to peak/25e4 at step `steps`.
  onecycle_torch: OneCycleLR's own rule: the same values, but the peak at step
    0.3 * steps - 1 and the end at step steps - 1 (optax's is about one step later).
  """
  total_steps = max(int(total_steps), 1)
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, total_steps)
  peak = peak_lr if peak_lr is not None else lr
  if name == "onecycle":
    return optax.cosine_onecycle_schedule(total_steps, peak)
  if name == "onecycle_torch":
    return torch_onecycle(total_steps, peak / DIV_FACTOR, peak,
                          peak / DIV_FACTOR / FINAL_DIV_FACTOR)
  raise LmcError(f"Unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}.")


def onecycle_momentum(total_steps: int) -> optax.Schedule:
  """OneCycleLR's cycled momentum (cycle_momentum=True): 0.95 -> 0.85 at the learning
  rate's peak -> 0.95 at the last step, with torch's phase boundaries."""
  return torch_onecycle(total_steps, MAX_MOMENTUM, BASE_MOMENTUM, MAX_MOMENTUM)


_map = jax.tree_util.tree_map
_zeros_like = functools.partial(_map, jnp.zeros_like)


class ScheduledTraceState(NamedTuple):
  count: jax.Array
  trace: optax.Updates


def scheduled_trace(decay: optax.Schedule) -> optax.GradientTransformation:
  """Momentum buffer `b = decay(t) * b + u` with a per-step decay (torch's SGD and RMSprop
  `momentum_buffer`, whose first value is the first update)."""

  def init_fn(params):
    return ScheduledTraceState(jnp.zeros([], jnp.int32), _zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    mu = decay(state.count)
    trace = _map(lambda g, t: g + mu * t, updates, state.trace)
    return trace, ScheduledTraceState(optax.safe_int32_increment(state.count), trace)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adam_scheduled_b1(b1: optax.Schedule, b2: float = 0.999,
                               eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam's scaling with a per-step beta1, as torch.optim.Adam(W) computes it when a
  scheduler changes `betas`: m_t = b1_t m + (1 - b1_t) g, bias correction 1 - b1_t ** t."""

  def init_fn(params):
    zeros = _zeros_like(params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

  def update_fn(updates, state, params=None):
    del params
    beta1 = b1(state.count)
    count = optax.safe_int32_increment(state.count)
    mu = _map(lambda g, m: beta1 * m + (1 - beta1) * g, updates, state.mu)
    nu = _map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
    c1, c2 = 1 - beta1 ** count, 1 - b2 ** count
    updates = _map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(name: str, schedule: optax.Schedule, weight_decay: float = 0.0,
                   momentum: float = 0.9,
                   momentum_schedule: Optional[optax.Schedule] = None
                   ) -> optax.GradientTransformation:
  """An optax optimizer equal to torch.optim.<name> with the same settings.

  AdamW decays weights decoupled from the gradient (scaled by the learning rate, as
  torch does); SGD, RMSprop and Adagrad add `weight_decay * w` to the gradient (L2).
  `momentum_schedule` (e.g. `onecycle_momentum`) is a per-step beta1 (adamw) or
  momentum (sgd, rmsprop; it replaces `momentum`), as OneCycleLR's cycle_momentum sets
  them: on RMSprop that switches on torch's momentum buffer (RMSprop's momentum 0 is
  overwritten); Adagrad has no such term and torch refuses it.
  """
  if name not in OPTIMIZERS:
    raise LmcError(f"Unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}.")
  if momentum_schedule is not None and name not in CYCLE_MOMENTUM_OPTIMIZERS:
    raise LmcError(f"Optimizer {name!r} has no momentum to cycle (torch's OneCycleLR refuses "
                   "it too); drop --cycle_momentum or use adamw, sgd or rmsprop.")
  if name == "adamw":
    if momentum_schedule is None:
      return optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
    return optax.chain(scale_by_adam_scheduled_b1(momentum_schedule, 0.999, 1e-8),
                       optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(schedule))
  l2 = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  if name == "sgd":
    if momentum_schedule is None:
      core = optax.sgd(schedule, momentum=momentum or None)
    else:
      core = optax.chain(scheduled_trace(momentum_schedule),
                         optax.scale_by_learning_rate(schedule))
  elif name == "rmsprop":
    if momentum_schedule is None:
      core = optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    else:  # torch: buf = mu * buf + g / (sqrt(v) + eps); w -= lr * buf
      core = optax.chain(optax.scale_by_rms(decay=0.99, eps=1e-8, eps_in_sqrt=False),
                         scheduled_trace(momentum_schedule),
                         optax.scale_by_learning_rate(schedule))
  else:
    core = optax.adagrad(schedule, initial_accumulator_value=0.0, eps=1e-10)
  return optax.chain(*l2, core)


def optimizer_for(optim: OptimConfig, total_steps: int) -> optax.GradientTransformation:
  """The optimizer an `OptimConfig` describes, its schedule spanning `total_steps` steps
  (the whole run)."""
  optim.validate()
  schedule = make_schedule(optim.schedule, optim.lr, total_steps, optim.peak_lr)
  return make_optimizer(optim.optimizer, schedule, optim.weight_decay, optim.momentum,
                        onecycle_momentum(total_steps) if optim.cycle_momentum else None)


@functools.lru_cache(maxsize=8)
def cached_adam(lr: float) -> optax.GradientTransformation:
  """Plain Adam, one object per learning rate: passed as a static argument to a jitted
  step, the same object lets every call reuse one compilation."""
  return optax.adam(lr)


@functools.lru_cache(maxsize=8)
def compiled_init(tx: optax.GradientTransformation, batched: bool = False):
  """`tx.init` (vmapped over a leading model axis with `batched`) as one compiled program per
  tree of shapes, not an eager one per leaf shape. For `cached_adam`'s optimizers, whose state
  is zeros and a zero count: the same arrays either way."""
  return jax.jit(jax.vmap(tx.init) if batched else tx.init)
