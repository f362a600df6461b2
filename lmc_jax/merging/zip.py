"""ZipIt! (Stoica et al., 2023): merge two networks by matching features over the union of
both models' units, so that two units of the *same* model may merge as well as one of each.

For every permutation of the spec, the features of both models (what activation matching
correlates: `symmetry.units.feature_sites`) are stacked side by side, `(samples, 2n)`, and
their `(2n, 2n)` correlation is zipped greedily: the most correlated pair of groups merges,
the merged group's correlation to every other group is the minimum of its two members',
times `alpha` (with `alpha <= 0`, a merged group takes no further part), until n groups
remain. Each model may spend at most `beta * n / 2` merges within itself; past that its
groups no longer merge with each other. Group g of the result is the mean of its members:
the merge matrix `M` `(n, 2n)` averages the members, the unmerge `U` `(2n, n)` copies a
group back to each member. A leaf of model m is merged by `M_m` `(n, n)` (its columns of
model m) on the axes where its layer makes units and by `U_m` on the axes where it reads
them; the merged leaf is the sum over the models where the leaf makes units (M averages),
else their mean (the head).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.align.activation import _site_features
from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.layer_taps import layer_values
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  axis_groups,
  join_blocks,
  leaf_shape,
  split_blocks,
)
from lmc_jax.symmetry.units import feature_sites
from lmc_jax.tree_utils import flatten, unflatten

CHUNK = 256
READERS = ("kernel", "embedding")  # leaves whose last axis makes units and others read them


class Zip(NamedTuple):
  """One permutation's zip: `merge` `(n, 2n)` rows averaging each group's members, `unmerge`
  `(2n, n)` 0/1, `groups` the members of each group (indices into the 2n stacked units:
  model A's 0..n-1, B's n..2n-1)."""
  merge: np.ndarray
  unmerge: np.ndarray
  groups: List[List[int]]

  def merge_of(self, m: int) -> np.ndarray:
    """`(n, n)`: model m's columns of `merge`."""
    n = self.merge.shape[0]
    return self.merge[:, m * n:(m + 1) * n]

  def unmerge_of(self, m: int) -> np.ndarray:
    n = self.merge.shape[0]
    return self.unmerge[m * n:(m + 1) * n]


def zip_correlation(corr: np.ndarray, alpha: float = 0.3, beta: float = 0.125) -> Zip:
  """Zips the `(2n, 2n)` correlation of two models' stacked units down to n groups (see the
  module docstring). Ties break towards the lowest (row, column) index."""
  sims = np.array(corr, np.float64)
  total = sims.shape[0]
  n = total // 2
  np.fill_diagonal(sims, -np.inf)
  groups = [[i] for i in range(total)]
  origin = [i // n for i in range(total)]
  budget = [int((total - n) // 2 * beta + 1e-4)] * 2
  while len(groups) > n:
    i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
    i, j = min(i, j), max(i, j)
    same = origin[i] == origin[j]
    groups[i] = sorted(groups[i] + groups[j])
    merged = np.minimum(sims[i], sims[j])
    if alpha <= 0:
      merged[:] = -np.inf
    else:
      merged = merged * alpha
    sims[i], sims[:, i] = merged, merged
    sims[i, i] = -np.inf
    sims = np.delete(np.delete(sims, j, 0), j, 1)
    del groups[j], origin[j]
    if same:
      budget[origin[i]] -= 1
      if budget[origin[i]] <= 0:
        mine = np.array([o == origin[i] for o in origin])
        sims[np.ix_(mine, mine)] = -np.inf
  unmerge = np.zeros((total, n))
  for g, members in enumerate(groups):
    unmerge[members, g] = 1.0
  return Zip(unmerge.T / unmerge.sum(0)[:, None], unmerge, groups)


def stacked_correlations(model, spec: PermutationSpec, tree_a, tree_b, x) -> Dict[str, np.ndarray]:
  """`{perm: (2n, 2n)}`: correlation of both models' units stacked (A's first) on inputs
  `x`, summed over the sites that read them."""
  x = np.asarray(x)
  sites = feature_sites(spec, model, tree_a, x[:1])
  paths = {s.path for s in sites}
  sums: Dict[int, list] = {}

  @jax.jit
  def feats(ta, tb, xb):
    va, vb = layer_values(model, ta, xb, paths), layer_values(model, tb, xb, paths)
    out = []
    for s in sites:
      pick = (lambda v: v[s.path][0] if s.side == "input" else v[s.path][1])
      f = jnp.concatenate([_site_features(s, pick(va)), _site_features(s, pick(vb))], 1)
      out.append((jnp.float32(f.shape[0]), f.sum(0), f.T @ f))
    return out

  for chunk in np.array_split(x, max(1, -(-len(x) // CHUNK))):
    got = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64),
                                 feats(tree_a, tree_b, to_device(chunk)))
    for k, m in enumerate(got):
      sums[k] = m if k not in sums else [a + b for a, b in zip(sums[k], m)]
  corr: Dict[str, np.ndarray] = {}
  for k, s in enumerate(sites):
    count, total, outer = sums[k]
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    c = cov / np.where(sd > 0, sd, np.inf)[:, None] / np.where(sd > 0, sd, np.inf)[None, :]
    corr[s.perm] = corr[s.perm] + c if s.perm in corr else c
  unread = sorted(set(spec.perm_to_axes) - set(corr))
  if unread:
    raise LmcError(f"ZipIt! correlates the units Flax's Dense, DenseGeneral, Conv and norm "
                   f"layers read or make, and none holds the units of permutation(s) "
                   f"{', '.join(unread)}; merge this network by weight matching (--method=weight).")
  return corr


def makes_units(path: str, groups: Sequence[Sequence[int]], view_axis: int) -> bool:
  """Whether axis `view_axis` of leaf `path` holds the units its layer makes (else it
  reads them): the last axis of a kernel or embedding, every axis of any other leaf."""
  if path.rsplit("/", 1)[-1].split("[")[0] not in READERS:  # a block: as its leaf
    return True
  return view_axis in groups[-1]


def zip_trees(spec: PermutationSpec, zips: Dict[str, Zip], trees: Sequence[dict]) -> dict:
  """The merged variables of the two models `trees` under `zips` (see the module
  docstring)."""
  flats = [split_blocks(spec, flatten(t)) for t in trees]
  out = {}
  for path, leaf in flats[0].items():
    shape = np.shape(leaf)
    view = leaf_shape(spec, path, shape)
    axes = spec.axes_to_perm.get(path, (None,) * len(view))
    groups = axis_groups(spec, path, shape) or [[a] for a in range(len(view))]
    makes = any(p is not None and makes_units(path, groups, a) for a, p in enumerate(axes))
    parts = []
    for m, flat in enumerate(flats):
      v = np.asarray(flat[path], np.float64).reshape(view)
      for a, p in enumerate(axes):
        if p is None:
          continue
        mat = zips[p].merge_of(m) if makes_units(path, groups, a) else zips[p].unmerge_of(m).T
        v = np.moveaxis(np.tensordot(mat, v, axes=([1], [a])), 0, a)
      parts.append(v)
    merged = np.sum(parts, 0) if makes else np.mean(parts, 0)
    out[path] = merged.reshape(shape).astype(np.asarray(leaf).dtype)
  return unflatten(join_blocks(spec, out, flatten(trees[0])))


def zip_models(model, spec: PermutationSpec, tree_a, tree_b, x, alpha: float = 0.3,
               beta: float = 0.125):
  """(merged variables, `{perm: Zip}`) of two models zipped on inputs `x`."""
  corr = stacked_correlations(model, spec, tree_a, tree_b, x)
  zips = {p: zip_correlation(c, alpha, beta) for p, c in corr.items()}
  return zip_trees(spec, zips, [tree_a, tree_b]), zips
