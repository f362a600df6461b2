"""Resetting BatchNorm statistics of interpolated networks.

The running mean and variance of an interpolated network are not the interpolation of the
endpoints' (the units' statistics change along the line, and averaging shrinks their
spread), so evaluating with them measures a broken network. The reset runs each network
in training mode over training batches, every batch normalised by its own statistics, and
sets each running statistic to the plain average over the batches of its batch value (as
PyTorch does with `momentum=None`).

Batch values are read through the network's own update rule, whatever its momentum m:
training mode from a zero state gives `(1 - m) * batch`, from a state of ones
`m + (1 - m) * batch`; their difference is m.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.execution import map_items, run_steps
from lmc_jax.host_arrays import to_device
from lmc_jax.lmc.interpolation import Curves, pair_sweep
from lmc_jax.nn.forward import apply_train, join_tree, split_tree


def has_batch_stats(tree) -> bool:
  """True for a variables dict (single model or stack) with BatchNorm statistics."""
  _, state = split_tree(tree)
  return bool(jax.tree_util.tree_leaves(state))


def reset_batch_stats(model, tree, x_batches, from_host: bool = False):
  """`tree` (one model) with every state leaf recomputed on `x_batches` `(R, b, d)`; the
  batches a `lax.scan`, or with `from_host` one jitted call each
  (`execution.ExecutionPlan.host_loops`)."""
  params, state = split_tree(tree)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, state)
  ones = jax.tree_util.tree_map(jnp.ones_like, state)
  _, from_zero = apply_train(model, params, zeros, x_batches[0])
  _, from_one = apply_train(model, params, ones, x_batches[0])
  keep = jax.tree_util.tree_map(lambda a, b: a - b, from_one, from_zero)  # m, per element
  total, _ = run_steps(_add_batch(model), zeros, x_batches, params, from_host=from_host)
  num = x_batches.shape[0]
  new_state = jax.tree_util.tree_map(lambda t, m: t / num / (1 - m), total, keep)
  return join_tree(params, new_state, tree)


@functools.lru_cache(maxsize=None)
def _add_batch(model):
  """The step of `reset_batch_stats` for `model`: `total` plus the state a training pass
  from a zero state gives on batch `xb` (one function object per model)."""
  def step(total, xb, params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, total)
    _, upd = apply_train(model, params, zeros, xb)
    return jax.tree_util.tree_map(jnp.add, total, upd), None
  return step


def _reset_chunk(model, mixed, params_i, params_j, alphas, x_batches, from_host):
  """The `transform` of `pair_sweep`: reset for a chunk of `(pairs * A)` networks."""
  del params_i, params_j, alphas
  return map_items(lambda t: reset_batch_stats(model, t, x_batches, from_host), mixed,
                   from_host=from_host)


def reset_batches(x_train: np.ndarray, num_batches: int, batch_size: int, seed: int = 0):
  """`(R, b, d)` float32: `num_batches` batches of distinct training inputs drawn with
  `seed` (fewer batches when the split is smaller)."""
  n = x_train.shape[0]
  b = max(1, min(int(batch_size), n))
  r = max(1, min(int(num_batches), n // b))
  order = np.random.default_rng(seed).permutation(n)[:r * b]
  return to_device(x_train[order].reshape((r, b) + x_train.shape[1:]), jnp.float32)


def reset_pair_sweep(model, params_stack, pairs, x_batches, x, y, alphas=None,
                     **kwargs) -> Curves:
  """`pair_sweep` with every interpolated network's BatchNorm statistics recomputed on
  `x_batches` `(R, b, d)` (see `reset_batches`) before it is evaluated on `(x, y)`."""
  return pair_sweep(model, params_stack, pairs, x, y, alphas, **reset_arguments(x_batches),
                    **kwargs)


def reset_arguments(x_batches) -> dict:
  """The arguments of `pair_sweep` (or `pairwise_aligned_sweep`) that reset BatchNorm
  statistics on `x_batches` `(R, b, d)`; none for None."""
  if x_batches is None:
    return {}
  return {"transform": _reset_chunk, "transform_data": x_batches}
