"""Activation matching (Ainsworth et al., Git Re-Basin; Li et al. 2016): permute model B's
hidden units so that each one behaves like a unit of model A on the same inputs.

A hidden layer's features (its output after the ReLU, and after the LayerNorm where it
follows the ReLU) move with that layer's permutation only, so every layer is one linear
assignment problem, solved exactly and independently: maximise the summed correlation of
matched units over a batch of training data.
"""
from __future__ import annotations

from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from lmc_jax.align.registry import Alignment, AlignTask, register
from lmc_jax.errors import LmcError


def hidden_features(model, params, x) -> List[jax.Array]:
  """Each hidden layer's output, `[(n, width_i)]`, for inputs `x` `(n, d_in)`."""
  _, state = model.apply({"params": params}, x, capture_intermediates=True)
  inter = state["intermediates"]
  feats = []
  for i in range(len(model.hidden)):
    h = inter[f"Dense_{i}"]["__call__"][0]
    if model.layernorm == "before_relu":
      h = jax.nn.relu(inter[f"LayerNorm_{i}"]["__call__"][0])
    elif model.layernorm == "after_relu":
      h = inter[f"LayerNorm_{i}"]["__call__"][0]
    else:
      h = jax.nn.relu(h)
    feats.append(h)
  return feats


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """`(w, w)` Pearson correlation of the columns of `a` and `b`, each `(n, w)`; a unit
  that is constant on the batch correlates 0 with everything."""
  a = a - a.mean(0)
  b = b - b.mean(0)
  sa, sb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
  sa, sb = np.where(sa > 0, sa, np.inf), np.where(sb > 0, sb, np.inf)
  return (a / sa).T @ (b / sb)


def activation_matching(model, spec, params_a, params_b, x) -> Dict[str, np.ndarray]:
  """The permutation of B (`{"P_i": (width_i,)}`) whose units best correlate with A's on
  inputs `x` `(n, d_in)`; `spec` must be the MLP spec (`P_i` acts on hidden layer i)."""
  if len(x) < 2:
    raise LmcError(f"Activation matching needs at least 2 inputs to correlate, got {len(x)}.")
  fa = hidden_features(model, params_a, jnp.asarray(x))
  fb = hidden_features(model, params_b, jnp.asarray(x))
  perm = {}
  for i, (a, b) in enumerate(zip(fa, fb)):
    corr = correlation(np.asarray(a, np.float64), np.asarray(b, np.float64))
    _, cols = linear_sum_assignment(corr, maximize=True)
    perm[f"P_{i}"] = cols
  if set(perm) != set(spec.perm_to_axes):
    raise LmcError(f"Activation matching knows the MLP's permutations {sorted(perm)}, but the "
                   f"spec has {sorted(spec.perm_to_axes)}.")
  return perm


@register("activation", "activation matching to the reference, on training inputs",
          uses=("fit_samples",))
def _align_by_activations(task: AlignTask) -> Alignment:
  ref = task.member(task.reference)
  return Alignment(task.star(lambda k: activation_matching(task.model, task.spec, ref,
                                                           task.member(k), task.fit_x)), {})
