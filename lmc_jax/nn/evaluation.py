"""Loss and accuracy of many parameter sets on a whole split, sample-weighted.

The split is padded to whole batches once; padding carries weight 0, so every mean is
the plain mean over the split's samples (never a mean of per-batch means). A stack of
parameter sets (axis 0) is evaluated in one jitted call.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.execution import ExecutionPlan, map_items, plan_or_default, run_steps
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.tree_utils import take

# A model whose test accuracy is within this of the majority class's share has collapsed:
# it predicts (nearly) one class whatever the input.
COLLAPSE_MARGIN = 0.01


def chance_accuracy(labels) -> float:
  """Accuracy of always predicting the most frequent label of `labels` `(n,)`."""
  labels = np.asarray(labels)
  if labels.size == 0:
    return float("nan")
  return float(np.bincount(labels.astype(np.int64).ravel()).max() / labels.size)


def is_collapsed(test_acc: float, chance: float) -> bool:
  """True for a (finite) test accuracy no better than chance plus `COLLAPSE_MARGIN`."""
  return bool(np.isfinite(test_acc) and test_acc <= chance + COLLAPSE_MARGIN)


class Batches(NamedTuple):
  x: jax.Array  # (num_batches, batch, d)
  y: jax.Array  # (num_batches, batch) int32
  w: jax.Array  # (num_batches, batch) float32: 1 for real samples, 0 for padding

  @property
  def batch_size(self) -> int:
    return self.x.shape[1]


def to_batches(x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> Batches:
  """Pads `(n, d)` inputs and `(n,)` labels to whole batches of `min(batch_size, n)`."""
  n = x.shape[0]
  b = max(1, min(int(batch_size), n))
  nb = -(-n // b)
  pad = nb * b - n
  xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  yp = np.concatenate([y, np.zeros((pad,), y.dtype)])
  wp = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  # device_put, not jnp.asarray: the same arrays, without a compiled copy per shape
  return Batches(*jax.device_put((xp.reshape(nb, b, *x.shape[1:]), yp.reshape(nb, b),
                                  wp.reshape(nb, b))))


@functools.lru_cache(maxsize=None)
def _sums_step(model):
  """The step of `metrics_one` for `model`: one batch's weighted sums of loss and correct
  answers added to the carry (one function object per model, so host loops compile once)."""
  def step(carry, batch, tree):
    x, y, w = batch
    loss, correct = loss_and_correct(apply_eval(model, tree, x), y)
    return (carry[0] + jnp.sum(w * loss), carry[1] + jnp.sum(w * correct)), None
  return step


def metrics_one(model, tree, batches: Batches, from_host: bool = False):
  """(loss, accuracy) of one parameter set on a split: scalars, sample-weighted means. The
  batches are a `lax.scan`, or with `from_host` a host loop over one jitted call per batch
  (`execution.ExecutionPlan.host_loops`)."""
  zero = jnp.zeros((), jnp.float32)
  (loss_sum, correct_sum), _ = run_steps(_sums_step(model), (zero, zero), tuple(batches), tree,
                                         from_host=from_host)
  n = jnp.sum(batches.w)
  return loss_sum / n, correct_sum / n


def metrics_stack(model, params_stack, batches: Batches):
  """(loss, accuracy), each `(m,)`, for a stack of `m` parameter sets (axis 0)."""
  return jax.vmap(metrics_one, in_axes=(None, 0, None))(model, params_stack, batches)


@functools.partial(jax.jit, static_argnums=0)
def _metrics_stack_jit(model, params_stack, batches):
  return metrics_stack(model, params_stack, batches)


def evaluate_zoo(model, params_stack, x: np.ndarray, y: np.ndarray, batch_size: int = 1024,
                 plan: Optional[ExecutionPlan] = None):
  """numpy (loss, accuracy), each `(num_models,)`, of every model of a zoo on (x, y): one
  jitted call, or where the plan runs loops from the host, a model and a batch at a time."""
  batches = to_batches(x, y, batch_size)
  if plan_or_default(plan).host_loops(take(params_stack, 0)):
    loss, acc = map_items(lambda tree: metrics_one(model, tree, batches, from_host=True),
                          params_stack, from_host=True)
  else:
    loss, acc = _metrics_stack_jit(model, params_stack, batches)
  return np.asarray(loss), np.asarray(acc)
