"""Which permutation each tapped layer's units move with, read off a permutation spec.

A contraction (`nn.Dense`, `nn.Conv`) reads units of the permutation on its kernel's
second-to-last axis and makes units of the one on its kernel's last axis; a norm's units
are those of its `scale` (or `bias`). `None` where the spec permutes nothing there (the
network's inputs and outputs).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from lmc_jax.align.spec import PermutationSpec
from lmc_jax.nn.layer_taps import LayerCall, layer_calls


def _perm_at(spec: PermutationSpec, path: str, axis: int) -> Optional[str]:
  axes = spec.axes_to_perm.get(path)
  if axes is None or not -len(axes) <= axis < len(axes):
    return None
  return axes[axis]


def input_perm(spec: PermutationSpec, call: LayerCall) -> Optional[str]:
  """The permutation of the units a contraction reads (None for a norm)."""
  if call.kind != "contraction":
    return None
  return _perm_at(spec, f"{call.path}/kernel", -2)


def output_perm(spec: PermutationSpec, call: LayerCall) -> Optional[str]:
  """The permutation of the units a tapped layer makes."""
  if call.kind == "contraction":
    return _perm_at(spec, f"{call.path}/kernel", -1)
  return _perm_at(spec, f"{call.path}/scale", 0) or _perm_at(spec, f"{call.path}/bias", 0)


def feature_sites(spec: PermutationSpec, model, tree, x) -> List[Tuple[str, str]]:
  """`[(contraction path, permutation)]`: the contractions whose inputs are hidden units,
  in call order. Their inputs are the features activation matching correlates."""
  out = []
  for call in layer_calls(model, tree, x):
    p = input_perm(spec, call)
    if p is not None:
      out.append((call.path, p))
  return out


def repair_sites(spec: PermutationSpec, model, tree, x) -> Tuple[str, ...]:
  """Paths of the layers REPAIR renormalises (`lmc.repair`): every Dense or Conv with a bias
  that makes hidden units, and, after one without a bias, the next norm (with scale and
  bias) on the same units, in call order."""
  sites: List[str] = []
  waiting = set()  # permutations whose last contraction had no bias to fold into
  for call in layer_calls(model, tree, x):
    p = output_perm(spec, call)
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
