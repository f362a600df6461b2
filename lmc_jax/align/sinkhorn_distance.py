"""Sinkhorn matching's data-free `distance` objective on the host, in numpy: nothing to
compile.

The objective, as `sinkhorn._step_fn` computes it under jit: `|theta_A - P(theta_B)|^2 /
|theta_A|^2` over every leaf, `P` the doubly stochastic matrices `log_sinkhorn(logits)`
applied as `apply_soft_permutation` does (`new = P @ old` along each axis of a group), and
Adam (optax's defaults) on the logits. Here every piece is written out with its gradient:
- the distance: per leaf the residual `R = A - P(B)`; the gradient for the matrix of the
  group on axis i is `-2 R_(i) X_(i)^T`, `X` the leaf with every other axis's matrix
  applied and `_(i)` the unfolding along axis i (summed over every axis the group acts on);
- Sinkhorn's alternate row and column log-normalisations, kept step by step and run back:
  `y = x - logsumexp(x)` along an axis has the gradient `g - softmax(x) * sum(g)`; the
  matrices of one size go through them as one batch, as in `project_all`.
A ResNet-20's step is a few dozen small matrix products, milliseconds on a CPU, where the
compiled scan spends tens of CPU seconds compiling (BUILD_NOTES.md). `sinkhorn_matching`
runs this on a CPU; the jitted scan stays the accelerator's path, and a test checks the
two agree.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
from threadpoolctl import threadpool_limits

from lmc_jax.symmetry.spec import PermutationSpec, leaf_shape, split_blocks
from lmc_jax.tree_utils import flatten

Mats = Dict[str, np.ndarray]
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults


def _log_normalised(x: np.ndarray, axis: int) -> np.ndarray:
  top = x.max(axis=axis, keepdims=True)
  return x - (np.log(np.exp(x - top).sum(axis=axis, keepdims=True)) + top)


def sinkhorn_forward(logits: np.ndarray, iters: int) -> Tuple[np.ndarray, List[np.ndarray]]:
  """`(P, inputs)`: the doubly stochastic `(..., n, n)` matrices of `sinkhorn_projection.
  log_sinkhorn` (leading axes a batch) and the input of each of its `2 * iters`
  normalisations (rows, columns)."""
  x, inputs = np.asarray(logits, np.float64), []
  for _ in range(iters):
    for axis in (-1, -2):
      inputs.append(x)
      x = _log_normalised(x, axis)
  return np.exp(x), inputs


def sinkhorn_backward(p: np.ndarray, inputs: List[np.ndarray], grad_p: np.ndarray) -> np.ndarray:
  """The gradient on the logits `(..., n, n)` of a loss whose gradient on `P` is `grad_p`."""
  g = grad_p * p  # through exp
  for k in reversed(range(len(inputs))):
    axis = -1 if k % 2 == 0 else -2
    soft = np.exp(_log_normalised(inputs[k], axis))
    g = g - soft * g.sum(axis=axis, keepdims=True)
  return g


def _by_size(mats: Mats) -> Dict[Tuple[int, ...], List[str]]:
  groups: Dict[Tuple[int, ...], List[str]] = {}
  for p, v in mats.items():
    groups.setdefault(v.shape, []).append(p)
  return groups


def _mixed(mat: np.ndarray, leaf: np.ndarray, axis: int) -> np.ndarray:
  return np.moveaxis(np.tensordot(mat, leaf, axes=([1], [axis])), 0, axis)


def _unfold(leaf: np.ndarray, axis: int) -> np.ndarray:
  return np.moveaxis(leaf, axis, 0).reshape(leaf.shape[axis], -1)


def leaves_for(spec: PermutationSpec, params) -> Dict[str, np.ndarray]:
  """One model's leaves as the spec's axes see them (blocks split, views applied), float64."""
  return {path: np.asarray(leaf, np.float64).reshape(leaf_shape(spec, path, np.shape(leaf)))
          for path, leaf in split_blocks(spec, flatten(params)).items()}


def distance_and_grads(spec: PermutationSpec, mats: Mats, leaves_a, leaves_b
                       ) -> Tuple[float, Mats]:
  """`(|A - P(B)|^2 / |A|^2, {p: its gradient on mats[p] (n, n)})` for leaves from
  `leaves_for`; groups without a matrix are left as they are."""
  norm = sum(float(np.sum(v * v)) for v in leaves_a.values())
  total, grads = 0.0, {p: np.zeros_like(m) for p, m in mats.items()}
  for path, b in leaves_b.items():
    axes = [(i, p) for i, p in enumerate(spec.axes_to_perm[path]) if p in mats]
    moved = b
    for i, p in axes:
      moved = _mixed(mats[p], moved, i)
    r = leaves_a[path] - moved
    total += float(np.sum(r * r))
    for i, p in axes:
      others = b
      for j, q in axes:
        if j != i:
          others = _mixed(mats[q], others, j)
      grads[p] -= 2.0 * _unfold(r, i) @ _unfold(others, i).T
  return total / norm, {p: g / norm for p, g in grads.items()}


def distance_matching(spec: PermutationSpec, params_a, params_b, logits: Mats, steps: int,
                      lr: float, iters: int) -> Tuple[Mats, np.ndarray]:
  """`steps` Adam steps on one model's logits `{p: (n, n)}`; returns the final doubly
  stochastic matrices and each step's distance `(steps,)` (before its update). BLAS runs
  on one thread: at these sizes more threads only wait on each other, and on a busy
  machine they made the steps 10-20x slower (BUILD_NOTES.md)."""
  with threadpool_limits(limits=1, user_api="blas"):
    return _adam_steps(spec, params_a, params_b, logits, steps, lr, iters)


def _adam_steps(spec, params_a, params_b, logits, steps, lr, iters):
  leaves_a, leaves_b = leaves_for(spec, params_a), leaves_for(spec, params_b)
  logits = {p: np.asarray(v, np.float64) for p, v in logits.items()}
  m = {p: np.zeros_like(v) for p, v in logits.items()}
  v2 = {p: np.zeros_like(v) for p, v in logits.items()}
  losses = np.zeros(steps)
  sizes = _by_size(logits)  # matrices of one size normalised as one batch
  for t in range(1, steps + 1):
    forward = {shape: sinkhorn_forward(np.stack([logits[p] for p in names]), iters)
               for shape, names in sizes.items()}
    mats = {p: forward[shape][0][k] for shape, names in sizes.items()
            for k, p in enumerate(names)}
    losses[t - 1], grad_mats = distance_and_grads(spec, mats, leaves_a, leaves_b)
    for shape, names in sizes.items():
      mat, inputs = forward[shape]
      grads = sinkhorn_backward(mat, inputs, np.stack([grad_mats[p] for p in names]))
      for p, g in zip(names, grads):
        m[p] = ADAM_B1 * m[p] + (1 - ADAM_B1) * g
        v2[p] = ADAM_B2 * v2[p] + (1 - ADAM_B2) * g * g
        step = (m[p] / (1 - ADAM_B1 ** t)) / (np.sqrt(v2[p] / (1 - ADAM_B2 ** t)) + ADAM_EPS)
        logits[p] = logits[p] - lr * step
  return {p: sinkhorn_forward(v, iters)[0] for p, v in logits.items()}, losses
