"""Loss and accuracy along the straight line between every pair of a zoo.

For pair (i, j) the curve runs from model i at alpha 0 to model j at alpha 1:
`theta(alpha) = (1 - alpha) * theta_i + alpha * theta_j`. All pairs and alphas are one
jitted call: `lax.map` over chunks of pairs, `vmap` over the pairs of a chunk and the
alphas, `lax.scan` over batches of the split. The chunk size keeps the working set under
a memory budget, so a large zoo never needs more memory than a small one.
"""
from __future__ import annotations

import functools
import logging
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.evaluation import Batches, metrics_one, metrics_stack, to_batches
from lmc_jax.nn.forward import LinearFirstLayer, apply_eval, is_variables, linear_first_layer
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.nn.precision import einsum
from lmc_jax.tree_utils import take
from lmc_jax.zoo.sharding import model_mesh, padded_size, replicate, split_models, to_host

NUM_ALPHAS = 11  # the study's 11 equally spaced points


def default_alphas(num: int = NUM_ALPHAS) -> np.ndarray:
  return np.linspace(0.0, 1.0, num)


def all_pairs(n: int, exclude=()) -> np.ndarray:
  """Unordered pairs i < j of `range(n)` as `(P, 2)` int32, skipping models in `exclude`."""
  keep = [k for k in range(n) if k not in set(exclude)]
  pairs = [(a, b) for ai, a in enumerate(keep) for b in keep[ai + 1:]]
  return np.asarray(pairs, np.int32).reshape(-1, 2)


class Curves(NamedTuple):
  alphas: np.ndarray  # (A,)
  pairs: np.ndarray  # (P, 2)
  loss: np.ndarray  # (P, A)
  acc: np.ndarray  # (P, A)


def interpolate(params_i, params_j, alpha):
  return jax.tree_util.tree_map(lambda a, b: (1 - alpha) * a + alpha * b, params_i, params_j)


def pair_chunk_size(params_stack, batch_size: int, num_alphas: int, num_pairs: int,
                    budget_elements: Optional[int] = None) -> int:
  """Pairs per chunk so that interpolated params plus activations stay within the budget
  (float32 elements; default the plan's `sweep_elements()`: a quarter of an accelerator's
  memory, 4 MiB on a CPU, where a chunk that stays in cache runs fastest; BUILD_NOTES.md
  measures it against 128 MiB chunks on the Moons sweeps)."""
  if budget_elements is None:
    budget_elements = plan_or_default(None).sweep_elements()
  leaves = jax.tree_util.tree_leaves(params_stack)
  n_params = sum(int(np.prod(leaf.shape[1:])) for leaf in leaves)
  # Activations: a sample passes through every unit; kernels' last axis counts them. A
  # convolution's channels are counted at every position of a 32x32 image (an upper bound
  # for the images here: later layers see fewer positions).
  units = sum(int(leaf.shape[-1]) * (1024 if leaf.ndim == 5 else 1) for leaf in leaves
              if leaf.ndim in (3, 5))
  per_pair = num_alphas * (n_params + batch_size * units * 3)
  return int(max(1, min(num_pairs, budget_elements // max(per_pair, 1))))


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _sweep(model, params_stack, pairs_chunked, alphas, batches: Batches, chunk: int,
           transform=None, transform_data=None):
  num_alphas = alphas.shape[0]

  def one_chunk(pairs):
    pi = jax.tree_util.tree_map(lambda p: p[pairs[:, 0]], params_stack)
    pj = jax.tree_util.tree_map(lambda p: p[pairs[:, 1]], params_stack)

    def mix(a, b):
      shape = (1, num_alphas) + (1,) * (a.ndim - 1)
      al = alphas.reshape(shape).astype(a.dtype)
      mixed = (1 - al) * a[:, None] + al * b[:, None]
      return mixed.reshape((chunk * num_alphas,) + a.shape[1:])

    mixed = jax.tree_util.tree_map(mix, pi, pj)
    first = linear_first_layer(model) if is_variables(mixed) else None
    if transform is not None:
      mixed = transform(model, mixed, pi, pj, alphas, transform_data, False)
      loss, acc = metrics_stack(model, mixed, batches)
    elif first is not None and batches.x.shape[-1] >= MIN_FAN_IN_TO_INTERPOLATE_OUTPUT:
      loss, acc = _line_metrics_first_linear(model, first, pi, pj, mixed, alphas, batches)
    else:
      loss, acc = metrics_stack(model, mixed, batches)
    return loss.reshape(chunk, num_alphas), acc.reshape(chunk, num_alphas)

  return jax.lax.map(one_chunk, pairs_chunked)


# Interpolating the first layer's output pays where that layer's matrix product is the
# work (MNIST's 784 inputs); with Moons' 2 inputs the product is nothing and materialising
# the interpolated outputs made the sweep slower (both measured in BUILD_NOTES.md).
MIN_FAN_IN_TO_INTERPOLATE_OUTPUT = 64


def _at(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _line_metrics_first_linear(model, first: LinearFirstLayer, params_i, params_j, mixed, alphas,
                               batches: Batches):
  """(loss, acc), each `(P * A,)`, of the interpolated networks `mixed` (pair-major) of a
  network that offers its linear first layer (`nn.forward.linear_first_layer`).

  That layer's output is linear in its parameters, so for each pair it is computed for the
  two endpoints only and interpolated, instead of once per alpha: for MNIST's 784-wide
  input that layer is most of the work.
  """
  kernel_i, kernel_j = _at(params_i, first.kernel), _at(params_j, first.kernel)
  num_pairs, num_alphas = kernel_i.shape[0], alphas.shape[0]
  al = alphas.reshape(1, -1, 1, 1)
  bias = _at(mixed, first.bias)  # (P * A, w)

  def body(carry, batch):
    x, y, w = batch
    zi = einsum(first.precision, "bd,pdw->pbw", x, kernel_i)
    zj = einsum(first.precision, "bd,pdw->pbw", x, kernel_j)
    z = (1 - al) * zi[:, None] + al * zj[:, None]
    z = z.reshape((num_pairs * num_alphas,) + zi.shape[1:])
    z = z + bias[:, None, :]
    logits = jax.vmap(lambda p, zk: apply_eval(model, p, x, **{first.keyword: zk}))(mixed, z)
    loss, correct = jax.vmap(loss_and_correct, in_axes=(0, None))(logits, y)
    return (carry[0] + loss @ w, carry[1] + correct @ w), None

  zero = jnp.zeros((num_pairs * num_alphas,), jnp.float32)
  (loss_sum, correct_sum), _ = jax.lax.scan(body, (zero, zero), tuple(batches))
  n = jnp.sum(batches.w)
  return loss_sum / n, correct_sum / n


def pair_sweep(model, params_stack, pairs, x: np.ndarray, y: np.ndarray,
               alphas: Optional[np.ndarray] = None, batch_size: int = 1024,
               chunk: Optional[int] = None, devices=None, transform=None,
               transform_data=None, plan: Optional[ExecutionPlan] = None) -> Curves:
  """Loss and accuracy at every alpha for every pair, in one jitted call.

  Args:
    model: the Flax module of the zoo.
    params_stack: stacked params, model on axis 0.
    pairs: (P, 2) model indices; the curve runs from pairs[:, 0] to pairs[:, 1].
    x, y: the split, (n, d) and (n,).
    alphas: (A,) points in [0, 1]; default the study's 11.
    chunk: pairs per `lax.map` step; default from the plan's `sweep_elements()`.
    devices: the pairs of a chunk are split over these (default: the plan's devices).
    transform: optional `f(model, mixed, params_i, params_j, alphas, transform_data,
      from_host)` applied to each chunk's interpolated networks `(chunk * A, ...)` before
      they are evaluated (e.g. REPAIR); a module-level function or a hashable object, so it
      can key the compilation; `from_host` says whether its own loops run from the host.
    plan: how it runs (`execution.ExecutionPlan`; default `default_plan()`).
  """
  alphas = default_alphas() if alphas is None else np.asarray(alphas, np.float64)
  pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
  if len(pairs) == 0:
    raise LmcError("No pairs to interpolate: a zoo needs at least 2 usable models; train "
                   "more with --num_models.")
  batches = to_batches(x, y, batch_size)
  plan = plan_or_default(plan)
  if devices is not None:
    plan = plan.with_devices(devices)
  mesh = model_mesh(plan.devices)
  if plan.host_loops(take(params_stack, 0)):
    loss, acc = _sweep_from_host(model, params_stack, pairs, alphas, batches, transform,
                                 transform_data)
    return Curves(alphas, pairs, loss, acc)
  if chunk is None:
    chunk = pair_chunk_size(params_stack, batches.batch_size, len(alphas), len(pairs),
                            plan.sweep_elements())
  chunk = padded_size(chunk, mesh)  # every device gets the same share of a chunk
  num_chunks = -(-len(pairs) // chunk)
  logging.debug("pair sweep: %d pairs x %d alphas in %d chunks of %d pairs on %d device(s)",
               len(pairs), len(alphas), num_chunks, chunk, mesh.devices.size)
  padded = np.concatenate([pairs, np.zeros((num_chunks * chunk - len(pairs), 2), np.int32)])
  loss, acc = _sweep(model, replicate(params_stack, mesh),
                     split_models(padded.reshape(num_chunks, chunk, 2), mesh, axis=1),
                     replicate(to_device(alphas, jnp.float32), mesh), replicate(batches, mesh),
                     chunk, transform,
                     None if transform_data is None else replicate(transform_data, mesh))
  loss, acc = to_host((loss, acc))
  loss = loss.reshape(-1, len(alphas))[:len(pairs)]
  acc = acc.reshape(-1, len(alphas))[:len(pairs)]
  return Curves(alphas, pairs, loss, acc)


_interpolate_jit = jax.jit(interpolate)
_take_jit = jax.jit(take)


@functools.lru_cache(maxsize=8)
def _transform_one(transform):
  """`transform` on one network, jitted once per (hashable) transform, not once per sweep:
  `(model, mixed, pi, pj, alpha, data) -> mixed`, the chunk axis of one network that
  `transform` takes added and dropped inside the compiled call (leaf by leaf from the host,
  that was a dispatch per leaf and per alpha)."""
  def one(model, mixed, pi, pj, alpha, data):
    add = lambda t: jax.tree_util.tree_map(lambda q: q[None], t)
    out = transform(model, add(mixed), add(pi), add(pj), alpha[None], data, True)
    return jax.tree_util.tree_map(lambda q: q[0], out)
  return jax.jit(one, static_argnums=0)


def _sweep_from_host(model, params_stack, pairs, alphas, batches, transform, transform_data):
  """The sweep one network at a time from the host (`ExecutionPlan.host_loops`): the
  vectorised sweep's chunks (every pair of a chunk with every alpha in one vmap, the first
  layer's shortcut) have no form for one network, so its pieces (the interpolation, the
  `transform` on a chunk of one network, `metrics_one` with its batches from the host) run
  here in Python loops over pairs and alphas."""
  loss = np.zeros((len(pairs), len(alphas)))
  acc = np.zeros_like(loss)
  transform = None if transform is None else _transform_one(transform)
  params_stack = jax.device_put(params_stack)  # on the device once
  for p, (i, j) in enumerate(pairs):
    pi, pj = _take_jit(params_stack, i), _take_jit(params_stack, j)
    for a, alpha in enumerate(alphas):
      mixed = _interpolate_jit(pi, pj, jnp.float32(alpha))
      if transform is not None:
        mixed = transform(model, mixed, pi, pj, jnp.float32(alpha), transform_data)
      loss[p, a], acc[p, a] = metrics_one(model, mixed, batches, from_host=True)
  return loss, acc


def pairwise_aligned_sweep(model, params_stack, aligned_j, pairs, x, y, **kwargs) -> Curves:
  """Curves from model pairs[p, 0] to `aligned_j[p]` (model pairs[p, 1] aligned to it):
  one sweep over a stack of the zoo followed by the aligned copies."""
  n = jax.tree_util.tree_leaves(params_stack)[0].shape[0]
  both = jax.tree_util.tree_map(lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)]),
                                params_stack, aligned_j)
  pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
  index = np.stack([pairs[:, 0], n + np.arange(len(pairs))], 1).astype(np.int32)
  curves = pair_sweep(model, both, index, x, y, **kwargs)
  return curves._replace(pairs=pairs)
