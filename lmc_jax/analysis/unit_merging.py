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

import jax
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.nn.models import OneHiddenLayer
from lmc_jax.tree_utils import stack, take, to_numpy


def neuron_vectors(params) -> np.ndarray:
  """(width, d_in + 1): each hidden unit's incoming weights and bias."""
  net = OneHiddenLayer.of(params)
  k, b = np.asarray(net.kernel_in, np.float64), np.asarray(net.bias_in, np.float64)
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
  net = OneHiddenLayer.of(params)
  out_w = np.asarray(net.kernel_out, np.float64)
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
  reduced = OneHiddenLayer(net.kernel_in[:, keep], net.bias_in[keep],
                           new_out.astype(net.kernel_in.dtype), net.bias_out)
  return MergeResult(reduced.params(), groups)


def zero_pad(params, width: int):
  """The same function with `width` hidden units: extra units have zero weights in and out."""
  net = OneHiddenLayer.of(params)
  w = net.kernel_in.shape[1]
  if width < w:
    raise LmcError(f"Cannot pad a width-{w} net down to width {width}.")
  pad = width - w
  return OneHiddenLayer(np.pad(net.kernel_in, ((0, 0), (0, pad))), np.pad(net.bias_in, (0, pad)),
                        np.pad(net.kernel_out, ((0, pad), (0, 0))), net.bias_out).params()


def reduce_zoo(params_stack, threshold: float = 0.99):
  """Merges every model of a stacked one-layer zoo and zero-pads them to a common width.

  Returns (stacked reduced params, widths after merging (num_models,))."""
  host = to_numpy(params_stack)
  num = jax.tree_util.tree_leaves(host)[0].shape[0]
  merged = [merge_similar_neurons(take(host, k), threshold).params for k in range(num)]
  widths = np.array([OneHiddenLayer.of(m).kernel_in.shape[1] for m in merged])
  top = max(int(widths.max()), 1)
  padded = [zero_pad(m, top) for m in merged]
  return stack(padded), widths
