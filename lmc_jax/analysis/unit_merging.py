"""Feature redundancy in one-hidden-layer nets (the study's section 5.1).

A hidden unit is the vector n = [incoming weights, bias]. If n_j = lam * n_i with lam > 0
then relu(n_j . x) = lam * relu(n_i . x), so unit j can be folded into unit i by adding
lam * (j's outgoing weights) to i's: the network's function is unchanged. Units whose
cosine similarity exceeds a threshold (the study: 0.99) are merged this way, exactly when
they are proportional and approximately otherwise. Units with an all-zero vector output a
constant 0 and are dropped.
"""
from __future__ import annotations

from typing import List, NamedTuple

import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.tree_utils import stack, take, to_numpy


def _check_one_layer(params):
  if set(params) != {"Dense_0", "Dense_1"}:
    raise LmcError(f"Neuron merging handles nets with one hidden layer (Dense_0, Dense_1); got "
                   f"layers {sorted(params)}.")


def neuron_vectors(params) -> np.ndarray:
  """(width, d_in + 1): each hidden unit's incoming weights and bias."""
  _check_one_layer(params)
  k = np.asarray(params["Dense_0"]["kernel"], np.float64)
  b = np.asarray(params["Dense_0"]["bias"], np.float64)
  return np.concatenate([k.T, b[:, None]], 1)


def cosine_similarity(params) -> np.ndarray:
  """(width, width) cosine similarity of the hidden units' [weights, bias] vectors
  (0 for a unit whose vector is zero)."""
  n = neuron_vectors(params)
  norm = np.linalg.norm(n, axis=1)
  safe = np.where(norm > 0, norm, 1.0)
  unit = n / safe[:, None]
  return (unit @ unit.T) * ((norm > 0)[:, None] & (norm > 0)[None, :])


class MergeResult(NamedTuple):
  params: dict  # the reduced net, numpy arrays
  groups: List[List[int]]  # original units folded into each kept unit (kept unit first)


def merge_similar_neurons(params, threshold: float = 0.99) -> MergeResult:
  """Folds every unit into an earlier unit whose cosine similarity exceeds `threshold`."""
  n = neuron_vectors(params)
  norm = np.linalg.norm(n, axis=1)
  cos = cosine_similarity(params)
  out_w = np.asarray(params["Dense_1"]["kernel"], np.float64)
  width = len(n)
  assigned = np.zeros(width, bool)
  groups = []
  for i in range(width):
    if assigned[i] or norm[i] == 0:
      continue
    members = [i] + [j for j in range(i + 1, width)
                     if not assigned[j] and norm[j] > 0 and cos[i, j] > threshold]
    assigned[members] = True
    groups.append(members)
  keep = [g[0] for g in groups]
  new_out = np.stack([sum((norm[j] / norm[g[0]]) * out_w[j] for j in g) for g in groups]) \
      if groups else np.zeros((0, out_w.shape[1]))
  dtype = np.asarray(params["Dense_0"]["kernel"]).dtype
  reduced = {
      "Dense_0": {"kernel": np.asarray(params["Dense_0"]["kernel"])[:, keep],
                  "bias": np.asarray(params["Dense_0"]["bias"])[keep]},
      "Dense_1": {"kernel": new_out.astype(dtype), "bias": np.asarray(params["Dense_1"]["bias"])},
  }
  return MergeResult(reduced, groups)


def zero_pad(params, width: int):
  """The same function with `width` hidden units: extra units have zero weights in and out."""
  _check_one_layer(params)
  k = np.asarray(params["Dense_0"]["kernel"])
  w = k.shape[1]
  if width < w:
    raise LmcError(f"Cannot pad a width-{w} net down to width {width}.")
  pad = width - w
  return {
      "Dense_0": {"kernel": np.pad(k, ((0, 0), (0, pad))),
                  "bias": np.pad(np.asarray(params["Dense_0"]["bias"]), (0, pad))},
      "Dense_1": {"kernel": np.pad(np.asarray(params["Dense_1"]["kernel"]), ((0, pad), (0, 0))),
                  "bias": np.asarray(params["Dense_1"]["bias"])},
  }


def reduce_zoo(params_stack, threshold: float = 0.99):
  """Merges every model of a stacked one-layer zoo and zero-pads them to a common width.

  Returns (stacked reduced params, widths after merging (num_models,))."""
  num = np.asarray(params_stack["Dense_0"]["kernel"]).shape[0]
  host = to_numpy(params_stack)
  merged = [merge_similar_neurons(take(host, k), threshold).params for k in range(num)]
  widths = np.array([m["Dense_0"]["kernel"].shape[1] for m in merged])
  top = max(int(widths.max()), 1)
  padded = [zero_pad(m, top) for m in merged]
  return stack(padded), widths
