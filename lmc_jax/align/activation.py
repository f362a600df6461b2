"""Activation matching (Ainsworth et al., Git Re-Basin; Li et al. 2016): permute model B's
hidden units so that each one behaves like a unit of model A on the same inputs.

The features of a permutation are the inputs of the layers (`nn.Dense`, `nn.Conv`,
`nn.DenseGeneral`) that read its units (`units.feature_sites`), or, for units no layer
reads (attention's query and key features), the outputs of the layers that make them: for
the study's MLP, each hidden layer's output after its ReLU (and its LayerNorm where that
follows the ReLU); for a conv net, every position of every image counts as a sample of a
channel, and a residual stream read by several layers sums their correlations. A
permutation's features move with it alone, so each is one linear assignment problem,
solved exactly and independently: maximise the summed correlation of matched units over a
batch of training data. Where the spec lets a group flip signs, features a flip negates
(`FeatureSite.odd`) count by the absolute value of their correlation, and the sign taken
is its sign (`weight.best_assignment`).
"""
from __future__ import annotations

import functools
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.align.registry import Alignment, AlignTask, register
from lmc_jax.align.weight import best_assignment
from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.layer_taps import layer_values
from lmc_jax.symmetry.spec import PermutationSpec
from lmc_jax.symmetry.units import FeatureSite, feature_sites

CHUNK = 256  # inputs per jitted call: a conv net's features of 2,048 images at once need GBs


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """`(w, w)` Pearson correlation of the columns of `a` and `b`, each `(n, w)`; a unit
  that is constant on the batch correlates 0 with everything."""
  a = a - a.mean(0)
  b = b - b.mean(0)
  return _normalised(np.sum(a * a, 0), np.sum(b * b, 0), a.T @ b)


def _normalised(ss_a, ss_b, cross) -> np.ndarray:
  """Correlations from centred sums of squares `(w,)` and the cross products `(w, w)`; 0
  for a unit without spread."""
  sa, sb = np.sqrt(ss_a), np.sqrt(ss_b)
  return cross / np.where(sa > 0, sa, np.inf)[:, None] / np.where(sb > 0, sb, np.inf)[None, :]


def _site_features(site: FeatureSite, value) -> jax.Array:
  """`(samples, n)`: the site's input or output with its units on the last axis; axes and
  factors other permutations move are averaged over, every other one is a sample."""
  value = jnp.mean(value.astype(jnp.float32), axis=site.mean_axes, keepdims=True) \
      if site.mean_axes else value.astype(jnp.float32)
  value = jnp.moveaxis(value, site.axis, -1)
  value = value.reshape(value.shape[:-1] + site.factors)
  first = value.ndim - len(site.factors)
  if site.mean_factors:
    value = jnp.mean(value, axis=tuple(first + j for j in site.mean_factors), keepdims=True)
  value = jnp.moveaxis(value, first + site.factor, -1)
  return value.reshape(-1, value.shape[-1])


def _value(site: FeatureSite, values) -> jax.Array:
  inp, out = values[site.path]
  return inp if site.side == "input" else out


@functools.lru_cache(maxsize=16)
def _moments_fn(model, sites: Tuple[FeatureSite, ...]):
  """Jitted `(tree_a, tree_b, x) -> [(n, mean_a, mean_b, ss_a, ss_b, cross)]`: the centred
  moments of both models' features at each site on one chunk of inputs."""
  paths = {s.path for s in sites}

  def moments(tree_a, tree_b, x):
    fa, fb = layer_values(model, tree_a, x, paths), layer_values(model, tree_b, x, paths)
    out = []
    for site in sites:
      a, b = _site_features(site, _value(site, fa)), _site_features(site, _value(site, fb))
      ac, bc = a - a.mean(0), b - b.mean(0)
      out.append((jnp.float32(a.shape[0]), a.mean(0), b.mean(0), jnp.sum(ac * ac, 0),
                  jnp.sum(bc * bc, 0), ac.T @ bc))
    return out
  return jax.jit(moments)


def _merge(m1, m2):
  """Moments of two chunks together (Chan et al.'s pairwise update), in float64."""
  n1, ma1, mb1, sa1, sb1, c1 = m1
  n2, ma2, mb2, sa2, sb2, c2 = m2
  n = n1 + n2
  da, db = ma2 - ma1, mb2 - mb1
  w = n1 * n2 / n
  return (n, ma1 + da * n2 / n, mb1 + db * n2 / n, sa1 + sa2 + da * da * w,
          sb1 + sb2 + db * db * w, c1 + c2 + np.outer(da, db) * w)


def _site_moments(model, spec: PermutationSpec, tree_a, tree_b, x):
  """`[(site, (n, mean_a, mean_b, ss_a, ss_b, cross))]`: both models' feature moments at
  every site on inputs `x`, accumulated over chunks in float64."""
  sites = tuple(feature_sites(spec, model, tree_a, x[:1]))
  fn = _moments_fn(model, sites)
  total = None
  for chunk in np.array_split(np.asarray(x), max(1, -(-len(x) // CHUNK))):
    m = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64),
                               fn(tree_a, tree_b, jax.device_put(chunk)))
    total = m if total is None else [_merge(t, c) for t, c in zip(total, m)]
  return list(zip(sites, total or []))


def feature_correlations(model, spec: PermutationSpec, tree_a, tree_b, x,
                         by_parity: bool = False):
  """`{perm: (n, n)}` correlation of A's units (rows) with B's (columns), summed over the
  sites that read them, on inputs `x`; with `by_parity`, `{perm: (even, odd)}`, the sums
  over the sites a sign flip leaves and negates."""
  corr: Dict[str, list] = {}
  for site, (_, _, _, ss_a, ss_b, cross) in _site_moments(model, spec, tree_a, tree_b, x):
    c = _normalised(ss_a, ss_b, cross)
    pair = corr.setdefault(site.perm, [0.0, 0.0])
    pair[int(site.odd)] = pair[int(site.odd)] + c
  if by_parity:
    return {p: tuple(pair) for p, pair in corr.items()}
  return {p: even + odd for p, (even, odd) in corr.items()}


def feature_products(model, spec: PermutationSpec, tree_a, tree_b, x) -> Dict[str, np.ndarray]:
  """`{perm: (n, n)}`: the mean product `E[a_i b_j]` of A's unit i with B's unit j over
  the samples of every site that reads them (uncentred, unnormalised: what an orthogonal
  map of the units acts on linearly), summed over those sites, on inputs `x`."""
  out: Dict[str, np.ndarray] = {}
  for site, (n, mean_a, mean_b, _, _, cross) in _site_moments(model, spec, tree_a, tree_b, x):
    out[site.perm] = out.get(site.perm, 0.0) + (cross + n * np.outer(mean_a, mean_b)) / n
  return out


def activation_matching(model, spec: PermutationSpec, params_a, params_b,
                        x) -> Dict[str, np.ndarray]:
  """The permutation of B (`{perm: (n,)}`, signed where `spec.signs` lets a group flip)
  whose units best correlate with A's on inputs `x` `(n, ...)`; `params_a`, `params_b`
  are trees of one model as the zoo stores them."""
  if len(x) < 2:
    raise LmcError(f"Activation matching needs at least 2 inputs to correlate, got {len(x)}.")
  return matching_of(spec, feature_correlations(model, spec, params_a, params_b, x,
                                                by_parity=True))


def matching_of(spec: PermutationSpec, corr) -> Dict[str, np.ndarray]:
  """The permutations from `feature_correlations(..., by_parity=True)`: one linear
  assignment per group; a group no site holds is refused by name."""
  unread = sorted(set(spec.perm_to_axes) - set(corr))
  if unread:
    raise LmcError(f"Activation matching correlates the units Flax's Dense, DenseGeneral, "
                   f"Conv and norm layers read or make, and no such layer holds the units of "
                   f"permutation(s) {', '.join(unread)}; align this network by weight "
                   "matching (--align=weight).")
  return {p: best_assignment(even, odd, p in spec.signs)[0] for p, (even, odd) in corr.items()}


def hidden_features(model, spec: PermutationSpec, tree, x) -> List[jax.Array]:
  """The features activation matching correlates, `(samples, n)` per site in call order."""
  sites = feature_sites(spec, model, tree, x[:1])
  got = layer_values(model, tree, to_device(x), {s.path for s in sites})
  return [_site_features(s, _value(s, got)) for s in sites]


@register("activation", "activation matching to the reference, on training inputs",
          uses=("fit_samples", "signs"))
def _align_by_activations(task: AlignTask) -> Alignment:
  ref = task.member(task.reference)
  return Alignment(task.star(lambda k: activation_matching(task.model, task.spec, ref,
                                                           task.member(k), task.fit_x)), {})
