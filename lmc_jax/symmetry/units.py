"""Which permutation each tapped layer's units move with, read off a permutation spec.

A tapped layer (`nn.layer_taps`) says which axes of its input and output meet which axes
of its weight; the spec names the permutation on each weight axis. Where the weight has a
view (a Dense reading a flattened conv feature map), that axis is a product of view axes,
each perhaps with its own permutation: a site then names the factor its permutation acts
on. `None` where the spec permutes nothing there (the network's inputs and outputs).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from lmc_jax.nn.layer_taps import LayerCall, layer_calls
from lmc_jax.symmetry.spec import PermutationSpec, axis_groups, block_path, leaf_shape
from lmc_jax.tree_utils import flatten

GROUPS = "<groups>"  # the group factor of a grouped conv's input: moved, never a site


class FeatureSite(NamedTuple):
  """Units of permutation `perm` in the input (`side='input'`) or output of the layer at
  `path`: its axis `axis`, viewed as `factors`, at factor `factor` (`factors == (n,)`
  without a view). Other axes (and other factors of `axis`) that other permutations move
  are `mean_axes` (and `mean_factors`): averaged over, so that every remaining sample
  means the same in two networks whose other units are still in different orders."""
  path: str
  perm: str
  side: str
  axis: int
  factors: Tuple[int, ...]
  factor: int
  mean_axes: Tuple[int, ...] = ()
  mean_factors: Tuple[int, ...] = ()
  odd: bool = False  # a sign flip of the units negates these features (`spec.signs`)


def _axis_perms(spec: PermutationSpec, path: str, shape, axis: int):
  """`[(perm or None, factor sizes, factor index, odd)]` of leaf axis `axis` (negative
  allowed); odd where a sign flip of the perm negates that factor of the leaf. A leaf of
  blocks (`spec.blocks`) answers for its other axes, which every block shares, as its
  first block; its axis of blocks is no site (none here)."""
  if path in spec.blocks:
    block_axis, sizes = spec.blocks[path]
    if axis % len(shape) == block_axis:
      return []
    path, shape = block_path(path, 0), tuple(sizes[0] if a == block_axis else n
                                             for a, n in enumerate(shape))
  axes = spec.axes_to_perm.get(path)
  if axes is None:
    return []
  groups = axis_groups(spec, path, shape)
  if groups is None or not -len(groups) <= axis < len(groups):
    return []
  view = leaf_shape(spec, path, shape)
  factors = tuple(view[a] for a in groups[axis])
  return [(axes[a], factors, k, (path, a) in spec.signs.get(axes[a], ()))
          for k, a in enumerate(groups[axis])]


def _sites(spec: PermutationSpec, call: LayerCall, flat, side: str) -> List[FeatureSite]:
  leaf = f"{call.path}/{call.weight}"
  if leaf not in flat:
    return []
  shape = tuple(flat[leaf].shape)
  pairs = call.reads if side == "input" else call.makes
  value_shape = call.in_shape if side == "input" else call.out_shape
  held = []  # (value axis, factors, factor index, perm (GROUPS for a group factor), odd)
  for value_axis, weight_axis in pairs:
    found = _axis_perms(spec, leaf, shape, weight_axis)
    if not found:
      continue
    per = int(np.prod(found[0][1]))
    size = value_shape[value_axis] if value_shape else per
    if size % per:
      continue
    if size > per:  # a grouped conv's input channels: (groups, per group)
      found = [(GROUPS, (size // per,) + found[0][1], 0, False)] + \
          [(p, (size // per,) + f, k + 1, odd) for p, f, k, odd in found]
    held.extend((value_axis, f, k, p, odd) for p, f, k, odd in found)
  moved = [(a, k) for a, _, k, p, _ in held if p is not None]  # moved by some permutation
  return [FeatureSite(call.path, p, side, axis, factors, k,
                      tuple(sorted({a for a, _ in moved if a != axis})),
                      tuple(j for a, j in moved if a == axis and j != k), odd)
          for axis, factors, k, p, odd in held if p is not None and p != GROUPS]


def output_perm(spec: PermutationSpec, call: LayerCall, flat) -> Optional[Tuple[str, ...]]:
  """The permutation(s) of the units a tapped layer makes on its output's last axis
  (several where that axis is viewed as factors); None where nothing permutes them, or
  where the layer makes units on more than one axis."""
  if call.makes != ((-1, -1),):
    return None
  perms = tuple(s.perm for s in _sites(spec, call, flat, "output"))
  return perms or None


def feature_sites(spec: PermutationSpec, model, tree, x) -> List[FeatureSite]:
  """The sites activation matching correlates, in call order: every layer input that holds
  units of a permutation, and, for a permutation no layer reads (attention's query and key
  features, read by the attention product), the outputs of the layers that make it."""
  flat = flatten(tree)
  calls = layer_calls(model, tree, x)
  reads = [s for call in calls for s in _sites(spec, call, flat, "input")]
  read = {s.perm for s in reads}
  made = [s for call in calls if call.kind == "contraction"
          for s in _sites(spec, call, flat, "output") if s.perm not in read]
  return reads + made


def repair_sites(spec: PermutationSpec, model, tree, x) -> Tuple[str, ...]:
  """Paths of the layers REPAIR renormalises (`lmc.repair`): every contraction with a bias
  that makes hidden units on its last axis, and, after one without a bias, the next norm
  (with scale and bias) on the same units, in call order."""
  flat = flatten(tree)
  sites: List[str] = []
  waiting = set()  # permutations whose last contraction had no bias to fold into
  for call in layer_calls(model, tree, x):
    p = output_perm(spec, call, flat)
    if p is None or call.path in sites:
      continue
    if call.kind == "contraction":
      if call.has_bias:
        sites.append(call.path)
        waiting.discard(p)
      else:
        waiting.add(p)
    elif p in waiting and call.has_bias and call.has_scale:
      sites.append(call.path)
      waiting.discard(p)
  return tuple(sites)
