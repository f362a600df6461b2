"""Which permutation each tapped layer's units move with, read off a permutation spec.

A contraction (`nn.Dense`, `nn.Conv`) reads units of the permutation on its kernel's
second-to-last axis and makes units of the one on its kernel's last axis; a norm's units
are those of its `scale` (or `bias`). Where the kernel has a view (a Dense reading a
flattened conv feature map), the read axis is a product of view axes, each perhaps with its
own permutation: a site then names the factor its permutation acts on.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

from lmc_jax.align.spec import PermutationSpec, axis_groups
from lmc_jax.nn.layer_taps import LayerCall, layer_calls
from lmc_jax.tree_utils import flatten


class FeatureSite(NamedTuple):
  """Units of permutation `perm` in the input of the contraction at `path`: the input's last
  axis, viewed as `factors`, at factor `factor` (`factors == (n,)` without a view)."""
  path: str
  perm: str
  factors: Tuple[int, ...]
  factor: int


def _axis_perms(spec: PermutationSpec, path: str, shape, axis: int):
  """`[(perm or None, factor sizes, factor index)]` of leaf axis `axis` (negative allowed)."""
  axes = spec.axes_to_perm.get(path)
  if axes is None:
    return []
  groups = axis_groups(spec, path, shape)
  if groups is None or not -len(groups) <= axis < len(groups):
    return []
  group = groups[axis]
  view = spec.views.get(path, tuple(shape))
  factors = tuple(view[a] for a in group)
  return [(axes[a], factors, k) for k, a in enumerate(group)]


def _kernel_or_scale(call: LayerCall, flat) -> Tuple[str, tuple]:
  leaf = f"{call.path}/kernel" if call.kind == "contraction" else f"{call.path}/scale"
  if leaf not in flat and call.kind == "norm":
    leaf = f"{call.path}/bias"
  return leaf, tuple(flat[leaf].shape) if leaf in flat else ()


def input_sites(spec: PermutationSpec, call: LayerCall, flat) -> List[FeatureSite]:
  """The permuted units a contraction reads (none for a norm)."""
  if call.kind != "contraction":
    return []
  leaf, shape = _kernel_or_scale(call, flat)
  return [FeatureSite(call.path, p, factors, k)
          for p, factors, k in _axis_perms(spec, leaf, shape, -2) if p is not None]


def output_perm(spec: PermutationSpec, call: LayerCall, flat) -> Optional[Tuple[str, ...]]:
  """The permutation(s) of the units a tapped layer makes (several where its output axis is
  viewed as factors), or None where nothing permutes them."""
  leaf, shape = _kernel_or_scale(call, flat)
  axis = -1 if call.kind == "contraction" else 0
  perms = tuple(p for p, _, _ in _axis_perms(spec, leaf, shape, axis) if p is not None)
  return perms or None


def feature_sites(spec: PermutationSpec, model, tree, x) -> List[FeatureSite]:
  """The sites whose inputs are hidden units, in call order: the features activation
  matching correlates."""
  flat = flatten(tree)
  return [s for call in layer_calls(model, tree, x) for s in input_sites(spec, call, flat)]


def repair_sites(spec: PermutationSpec, model, tree, x) -> Tuple[str, ...]:
  """Paths of the layers REPAIR renormalises (`lmc.repair`): every Dense or Conv with a bias
  that makes hidden units, and, after one without a bias, the next norm (with scale and
  bias) on the same units, in call order."""
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
