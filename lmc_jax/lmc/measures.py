"""Scalar measures of a loss curve along a line between two networks.

Every function takes `loss` of shape `(..., A)` on `alphas` `(A,)` with alphas[0] = 0
(model i) and alphas[-1] = 1 (model j), and returns shape `(...)`.
"""
from __future__ import annotations

import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.records import MEASURE_NAMES, CurveSet


def _check(loss, alphas):
  alphas = np.asarray(alphas, np.float64)
  if alphas.ndim != 1 or alphas[0] != 0.0 or alphas[-1] != 1.0:
    raise LmcError("Measures need alphas running from 0 to 1 inclusive; include both endpoints.")
  loss = np.asarray(loss, np.float64)
  if loss.shape[-1] != alphas.shape[0]:
    raise LmcError(f"Loss curves have {loss.shape[-1]} points but there are {len(alphas)} alphas.")
  return loss, alphas


def epsilon(loss, alphas):
  """The study's epsilon: max_a L(a) - max(L(0), L(1))."""
  loss, _ = _check(loss, alphas)
  return loss.max(-1) - np.maximum(loss[..., 0], loss[..., -1])


def loss_barrier(loss, alphas):
  """Definition 5 of the study: max_a [L(a) - ((1 - a) L(0) + a L(1))]."""
  loss, alphas = _check(loss, alphas)
  chord = (1 - alphas) * loss[..., :1] + alphas * loss[..., -1:]
  return (loss - chord).max(-1)


def rebasin_barrier(loss, alphas):
  """Git Re-Basin's barrier: max_a L(a) - (L(0) + L(1)) / 2."""
  loss, _ = _check(loss, alphas)
  return loss.max(-1) - 0.5 * (loss[..., 0] + loss[..., -1])


# Name -> function, for every measure a `CurveSet` holds (the names are stated once, in
# `records.MEASURE_NAMES`; these are their functions, in that order).
MEASURES = dict(zip(MEASURE_NAMES, (epsilon, loss_barrier, rebasin_barrier), strict=True))


def pair_matrix(values, pairs, n: int, fill=np.nan) -> np.ndarray:
  """Symmetric `(n, n)` matrix from per-pair values `(P,)`; the diagonal is 0, pairs
  not listed are `fill`."""
  m = np.full((n, n), fill, np.float64)
  np.fill_diagonal(m, 0.0)
  pairs = np.asarray(pairs)
  m[pairs[:, 0], pairs[:, 1]] = values
  m[pairs[:, 1], pairs[:, 0]] = values
  return m


def quartiles(values) -> dict:
  """Median and quartiles of a 1-d set of values (non-finite values left out)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return {"q1": float("nan"), "median": float("nan"), "q3": float("nan"), "n": 0}
  q1, med, q3 = np.percentile(v, [25, 50, 75])
  return {"q1": float(q1), "median": float(med), "q3": float(q3), "n": int(v.size)}


def mean_std(values) -> str:
  """"mean +- std" of the values that are not None, 3 decimals ("n/a" for none)."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return "n/a"
  return f"{v.mean():.3f} +- {v.std():.3f}"


def single_linkage_order(matrix) -> np.ndarray:
  """Leaf order of single-linkage hierarchical clustering on a symmetric `(n, n)`
  dissimilarity matrix (negative values count as 0, as epsilon may dip below 0; missing
  ones, NaN, as 0; infinite ones as the largest finite one)."""
  from scipy.cluster.hierarchy import leaves_list, linkage
  from scipy.spatial.distance import squareform
  m = np.asarray(matrix, np.float64)
  finite = m[np.isfinite(m)]
  big = float(finite.max()) if finite.size else 0.0
  m = np.clip(np.nan_to_num(m, nan=0.0, posinf=big, neginf=0.0), 0.0, None)
  m = 0.5 * (m + m.T)
  np.fill_diagonal(m, 0.0)
  if len(m) < 3:
    return np.arange(len(m))
  return leaves_list(linkage(squareform(m, checks=False), method="single"))


def curve_set(curves) -> CurveSet:
  """The `CurveSet` of a `Curves` (pairs (P, 2), loss and acc (P, A), alphas (A,)), with
  every measure of `MEASURES` per pair: what barrier.json and the other result files hold
  for one set of curves."""
  return CurveSet(curves.pairs, curves.loss, curves.acc,
                  {name: fn(curves.loss, curves.alphas) for name, fn in MEASURES.items()})
