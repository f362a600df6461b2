"""Partial zipping (ZipIt!'s "zip the first K layers"): the first K layers of two networks
are zipped into one, the rest stay one branch per parent, and the merged network returns
both parents' logits side by side.

A network's depth is its number of hidden permutations plus one (the head): the number of
Dense layers of an MLP. Zipping K layers zips the first K permutations in the order the
network makes them (`zip_order`); a leaf that makes units of a zipped permutation is shared
(zipped as `merging.zip` does), every other leaf stays its parent's, reading the zipped
units through the unmerge matrix (each zipped unit feeds the parent's units it absorbed).
K = 0 gives the two parents themselves; K = depth the full zip (both branches the zipped
network).

The branches are kept as one stacked tree with a leading axis of 2, as params.npz keeps a
zoo; every shared leaf is equal in both.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.merging.evaluate import Scores, predict_logits
from lmc_jax.merging.zip import Zip, makes_units, zip_trees
from lmc_jax.symmetry.spec import PermutationSpec, axis_groups, leaf_shape
from lmc_jax.symmetry.units import feature_sites
from lmc_jax.tree_utils import flatten, stack, take, unflatten


def zip_depth(spec: PermutationSpec) -> int:
  """Layers a network has for `--zip_layers`: its permutations plus the head."""
  return len(spec.perm_to_axes) + 1


def check_zip_layers(layers: int, spec: PermutationSpec, flag: str = "--zip_layers") -> int:
  """`layers` if it is within 0..depth, else one sentence naming `flag`."""
  depth = zip_depth(spec)
  if not 0 <= layers <= depth:
    raise LmcError(f"{flag}={layers} is outside this network, which has {depth} layers "
                   f"({depth - 1} hidden and the head); pass 0..{depth}.")
  return layers


def zip_order(model, spec: PermutationSpec, tree, x) -> List[str]:
  """The permutations in the order the network makes their units (its feature sites'
  order), then any no site reads."""
  seen = list(dict.fromkeys(s.perm for s in feature_sites(spec, model, tree, np.asarray(x)[:1])))
  return seen + [p for p in spec.perm_to_axes if p not in seen]


def zip_branches(spec: PermutationSpec, zips: Dict[str, Zip], trees: Sequence[dict],
                 order: Sequence[str], layers: int) -> dict:
  """The two branches, stacked `(2, ...)` per leaf, of `trees` with their first `layers`
  layers zipped by `zips`, the permutations taken in `order` (see the module docstring)."""
  if layers >= len(order) + 1:
    return stack([zip_trees(spec, zips, trees)] * 2)
  zipped = set(order[:layers])
  flats = [flatten(t) for t in trees]
  out: List[dict] = [{}, {}]
  for path, leaf in flats[0].items():
    shape = np.shape(leaf)
    view = leaf_shape(spec, path, shape)
    axes = spec.axes_to_perm.get(path, (None,) * len(view))
    groups = axis_groups(spec, path, shape) or [[a] for a in range(len(view))]
    active = [(a, p) for a, p in enumerate(axes) if p in zipped]
    shared = any(makes_units(path, groups, a) for a, p in active)
    parts = []
    for m, flat in enumerate(flats):
      v = np.asarray(flat[path], np.float64).reshape(view)
      for a, p in active:
        mat = zips[p].merge_of(m) if makes_units(path, groups, a) else zips[p].unmerge_of(m).T
        v = np.moveaxis(np.tensordot(mat, v, axes=([1], [a])), 0, a)
      parts.append(v)
    dtype = np.asarray(leaf).dtype
    for m in range(2):
      v = np.sum(parts, 0) if shared else parts[m]
      out[m][path] = v.reshape(shape).astype(dtype)
  return stack([unflatten(o) for o in out])


def branch_logits(model, branches, x) -> np.ndarray:
  """`(n, 2 * C)`: each branch's logits on `x`, the first branch's first; a one-logit
  (sigmoid) net's logit z becomes the two logits `[0, z]` (the same probabilities)."""
  out = [predict_logits(model, take(branches, m), x) for m in range(2)]
  if out[0].shape[1] == 1:
    out = [np.concatenate([np.zeros_like(z), z], 1) for z in out]
  return np.concatenate(out, 1)


def branch_scores(logits, y, parts: Sequence[Sequence[int]]) -> Scores:
  """Scores of side-by-side logits `(n, 2 * C)`: the joint prediction is the class of the
  largest of all 2C logits (ZipIt!'s concatenated heads); the loss is the cross-entropy of
  the class probabilities summed over both branches (a softmax over all 2C logits); part m's
  accuracy is branch m's argmax over part m's classes, on their examples."""
  logits, y = np.asarray(logits, np.float64), np.asarray(y)
  c = logits.shape[1] // 2
  joint = logits - logits.max(1, keepdims=True)
  log_z = np.log(np.exp(joint).sum(1))
  per_class = np.log(np.exp(joint[:, :c]) + np.exp(joint[:, c:]))
  loss = float(np.mean(log_z - per_class[np.arange(len(y)), y]))
  acc = float(np.mean(np.argmax(logits, 1) % c == y))
  accs = []
  for m, classes in enumerate(parts):
    classes = np.asarray(sorted(classes), np.int64)
    mask = np.isin(y, classes)
    if not mask.any():
      accs.append(float("nan"))
      continue
    pred = classes[np.argmax(logits[mask][:, m * c + classes], 1)]
    accs.append(float(np.mean(pred == y[mask])))
  return Scores(loss, acc, tuple(accs))
