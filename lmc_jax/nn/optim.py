"""Optimizers and learning-rate schedules, configured to match their PyTorch namesakes.

The study's code used PyTorch; each optax chain here reproduces the PyTorch update rule
(hyper-parameter defaults and where weight decay enters), so its settings carry over.
"""
from __future__ import annotations

import functools

import optax

from lmc_jax.errors import LmcError

OPTIMIZERS = ("adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "onecycle")


def make_schedule(name: str, lr: float, total_steps: int, peak_lr=None) -> optax.Schedule:
  """Per-step learning rate.

  cosine: from `lr` down to 0 over `total_steps` (CosineAnnealingLR with T_max = steps).
  onecycle: OneCycleLR's defaults: warm up from peak/25 to `peak_lr` (default `lr`) over
    30% of the steps, then anneal to peak/25e4.
  """
  total_steps = max(int(total_steps), 1)
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr, total_steps)
  if name == "onecycle":
    return optax.cosine_onecycle_schedule(total_steps, peak_lr if peak_lr is not None else lr)
  raise LmcError(f"Unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}.")


def make_optimizer(name: str, schedule: optax.Schedule, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> optax.GradientTransformation:
  """An optax optimizer equal to torch.optim.<name> with the same settings.

  AdamW decays weights decoupled from the gradient (scaled by the learning rate, as
  torch does); SGD, RMSprop and Adagrad add `weight_decay * w` to the gradient (L2).
  """
  if name == "adamw":
    return optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
  l2 = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  if name == "sgd":
    core = optax.sgd(schedule, momentum=momentum or None)
  elif name == "rmsprop":
    core = optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False)
  elif name == "adagrad":
    core = optax.adagrad(schedule, initial_accumulator_value=0.0, eps=1e-10)
  else:
    raise LmcError(f"Unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}.")
  return optax.chain(*l2, core)


def optimizer_for(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer a `ZooConfig` describes, its schedule spanning the whole run."""
  schedule = make_schedule(config.schedule, config.lr, config.epochs * steps_per_epoch,
                           config.peak_lr)
  return make_optimizer(config.optimizer, schedule, config.weight_decay, config.momentum)


@functools.lru_cache(maxsize=8)
def cached_adam(lr: float) -> optax.GradientTransformation:
  """Plain Adam, one object per learning rate: passed as a static argument to a jitted
  step, the same object lets every call reuse one compilation."""
  return optax.adam(lr)
