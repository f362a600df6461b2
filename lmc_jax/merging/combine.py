"""`merge(module, spec, [variables, ...], method=..., data=...)`: one network from several.

- `naive`: the weighted mean of the variables as they are;
- any registered alignment method (`weight`, `activation`, `ste`, `sinkhorn`, `mergemany`,
  ...; `align.registry.method_names()`): every model permuted into the first one's frame
  (MergeMany: jointly, to the mean of the others), then the weighted mean;
- `zip`: ZipIt! (`merging.zip`, two models); with `zip_layers=K` below the network's depth,
  only the first K layers are zipped and the result is two branches stacked on a leading
  axis (`merging.partial`), each returning one parent's logits.

Weights: `alpha` for two models (`(1 - alpha) * first + alpha * second`), else equal. With
`repair`, the merged network's hidden units are renormalised (REPAIR) to the same weighted
mean of the parents' unit statistics on `data`; without it, a BatchNorm network's running
statistics are recomputed on `data`.
"""
from __future__ import annotations

import time
from typing import Dict, List, NamedTuple, Optional, Sequence

import jax
import numpy as np

from lmc_jax.align.registry import (
  AlignTask,
  MethodSettings,
  align_by,
  check_methods,
  method_names,
)
from lmc_jax.errors import LmcError
from lmc_jax.lmc.batchnorm import has_batch_stats, reset_batch_stats, reset_batches
from lmc_jax.lmc.repair import repair_network, site_stats
from lmc_jax.merging.partial import check_zip_layers, zip_branches, zip_depth, zip_order
from lmc_jax.merging.zip import zip_models, zip_trees
from lmc_jax.nn.forward import PARAMS, is_variables
from lmc_jax.symmetry.spec import identity_permutation, perm_sizes
from lmc_jax.symmetry.units import repair_sites
from lmc_jax.tree_utils import stack, take, to_numpy

NAIVE, ZIP = "naive", "zip"
RESET_BATCHES, RESET_BATCH_SIZE = 10, 256
LABELLED = ("ste", "sinkhorn", "exact")  # methods that fit on the loss of labelled data


def merge_method_names() -> List[str]:
  """Every method `merge` takes: naive, the registered alignment methods, zip."""
  return [NAIVE, *method_names(), ZIP]


def check_merge_methods(names: Sequence[str]) -> List[str]:
  """`names` without repeats, or an LmcError naming the unknown ones and the choices."""
  own = [n for n in names if n not in (NAIVE, ZIP)]
  unknown = [n for n in own if n not in merge_method_names()]
  if unknown or not names:
    raise LmcError(f"Unknown merging method(s) {', '.join(unknown) or '(none given)'}; use one "
                   f"or more of {', '.join(merge_method_names())}, comma-separated.")
  if own:
    check_methods(own)
  return list(dict.fromkeys(names))


class Merged(NamedTuple):
  """A merge: the merged variables, the parents in the merged frame (permutation methods;
  the parents themselves for naive and zip), one permutation per parent (identity for
  naive and zip), what the method reports, seconds."""
  variables: dict
  aligned: List[dict]
  perms: List[Dict[str, np.ndarray]]
  info: dict
  seconds: float


def _inputs(data) -> Optional[np.ndarray]:
  """The fitting inputs of `data`: an array `(n, ...)`, an `(x, y)` pair, or a Dataset."""
  if data is None:
    return None
  if hasattr(data, "x_train"):
    return np.asarray(data.x_train)
  if isinstance(data, tuple):
    return np.asarray(data[0])
  return np.asarray(data)


def _labels(data) -> Optional[np.ndarray]:
  if hasattr(data, "y_train"):
    return np.asarray(data.y_train)
  if isinstance(data, tuple) and len(data) > 1:
    return np.asarray(data[1])
  return None


def merge_weights(count: int, alpha: Optional[float]) -> np.ndarray:
  """`(count,)`: `[1 - alpha, alpha]` for two models with `alpha`, else equal."""
  if alpha is None:
    return np.full(count, 1.0 / count)
  if count != 2:
    raise LmcError(f"alpha interpolates two models; {count} were given (leave alpha out for "
                   "their mean).")
  return np.array([1.0 - alpha, alpha])


def weighted_mean(trees: Sequence[dict], weights) -> dict:
  return jax.tree_util.tree_map(
      lambda *ls: sum(w * np.asarray(v, np.float64) for w, v in zip(weights, ls))
      .astype(np.asarray(ls[0]).dtype), *trees)


def finish(module, spec, merged, parents, weights, x, repair: bool, unit_maps=None):
  """`merged` REPAIRed to the weighted mean of the `parents`' unit statistics on `x` (with
  `repair`), or with its BatchNorm statistics recomputed on `x` (a BatchNorm net without
  it). `unit_maps`: for zip, `{site: [(n, n) per parent]}` taking each parent's statistics
  to the merged units (default: the parents are in the merged frame already)."""
  if x is None:
    if repair or has_batch_stats(merged):
      raise LmcError("REPAIR and the BatchNorm reset need training inputs; pass data=.")
    return merged
  if repair:
    sites = repair_sites(spec, module, merged, x[:1])
    if not sites:
      raise LmcError("REPAIR found no layer to repair in this network (no hidden unit made by "
                     "a Dense or Conv with a bias or by a norm after one without).")
    stats = [site_stats(module, p, x, sites) for p in parents]
    targets = {}
    for s in sites:
      if unit_maps is not None and s not in unit_maps:
        continue  # units no permutation moves: left as zipped
      mean = [np.asarray(st[s][0], np.float64) for st in stats]
      std = [np.asarray(st[s][1], np.float64) for st in stats]
      if unit_maps is not None:
        mean = [m @ v for m, v in zip(unit_maps[s], mean)]
        std = [m @ v for m, v in zip(unit_maps[s], std)]
      targets[s] = (np.float32(sum(w * v for w, v in zip(weights, mean))),
                    np.float32(sum(w * v for w, v in zip(weights, std))))
    return to_numpy(repair_network(module, merged, targets, x))
  if has_batch_stats(merged):
    batches = reset_batches(x, RESET_BATCHES, RESET_BATCH_SIZE)
    return to_numpy(reset_batch_stats(module, merged, batches))
  return merged


def merge_models(module, spec, variables: Sequence[dict], method: str = "weight", data=None,
                 alpha: Optional[float] = None, repair: bool = False,
                 settings: Optional[MethodSettings] = None, zip_alpha: float = 0.3,
                 zip_beta: float = 0.125, zip_layers: Optional[int] = None) -> Merged:
  """Merges `variables` (one variables or params dict per model, the same shapes) of the
  Flax `module` by `method` (see the module docstring); `data` (inputs `(n, ...)`, an
  `(x, y)` pair or a Dataset: training data) fits the data-driven methods, REPAIR and the
  BatchNorm reset; `settings` are the alignment methods' (`MethodSettings`)."""
  start = time.perf_counter()
  variables = [to_numpy(v) for v in variables]
  if len(variables) < 2:
    raise LmcError(f"Merging needs at least 2 models, got {len(variables)}.")
  shapes = [jax.tree_util.tree_map(np.shape, v) for v in variables]
  if any(s != shapes[0] for s in shapes[1:]):
    raise LmcError("The models to merge differ in their variables' names or shapes; merge "
                   "models of one architecture and width.")
  bare = not is_variables(variables[0])
  if bare:  # a params dict: the spec, REPAIR and the taps read whole variables dicts
    variables = [{PARAMS: v} for v in variables]
  settings = settings if settings is not None else MethodSettings()
  x = _inputs(data)
  weights = merge_weights(len(variables), alpha)
  (method,) = check_merge_methods([method])
  sizes = perm_sizes(spec, variables[0])
  info: dict = {}
  unit_maps = None
  if method == ZIP:
    if len(variables) != 2:
      raise LmcError(f"zip merges two models, got {len(variables)}; use mergemany or weight "
                     "for more.")
    if x is None:
      raise LmcError("zip matches features on training inputs; pass data=.")
    fit = x[:settings.fit_samples]
    zipped, zips = zip_models(module, spec, variables[0], variables[1], fit, zip_alpha, zip_beta)
    if alpha is not None:  # a zip weighted towards one model: its groups' members re-weighted
      zips = {p: z._replace(merge=_reweighted(z, weights)) for p, z in zips.items()}
      zipped = zip_trees(spec, zips, variables)
    aligned, perms = variables, [identity_permutation(sizes)] * 2
    info = {"same_model_groups": {p: _same_model(z) for p, z in zips.items()}}
    if zip_layers is not None and check_zip_layers(zip_layers, spec) < zip_depth(spec):
      order = zip_order(module, spec, variables[0], fit)
      branches = zip_branches(spec, zips, variables, order, zip_layers)
      if repair:
        branches = stack([finish(module, spec, take(branches, m), aligned, np.ones(2), fit, True,
                                 _branch_maps(module, spec, variables[0], fit, zips,
                                              order[:zip_layers], m)) for m in range(2)])
      merged = branches
      info["branches"] = 2
    else:
      if repair:
        unit_maps = _site_maps(module, spec, variables[0], fit, zips)
      # the weights are in the merge matrices already: their rows sum to 1 over both models
      merged = finish(module, spec, zipped, aligned, np.ones(2), fit, repair, unit_maps)
  else:
    if method == NAIVE:
      aligned, perms = variables, [identity_permutation(sizes)] * len(variables)
    else:
      if method in LABELLED and _labels(data) is None:
        raise LmcError(f"{method} fits its permutations on labelled training data; pass "
                       "data=(x, y) or a Dataset.")
      y = _labels(data)  # exact search scores its candidates on them too
      task = AlignTask.make(module, spec, stack(variables), 0, (), x, y,
                            None if x is None else x[:settings.fit_samples],
                            None if y is None else y[:settings.fit_samples], settings)
      result = align_by(method, task)
      aligned = [take(to_numpy(result.params), k) for k in range(len(variables))]
      perms, info = result.perms, result.info
    merged = weighted_mean(aligned, weights)
    fit = None if x is None else x[:settings.fit_samples]
    merged = finish(module, spec, merged, aligned, weights, fit, repair)
  if bare:
    merged, aligned = merged[PARAMS], [a[PARAMS] for a in aligned]
  return Merged(merged, aligned, [{p: np.asarray(v) for p, v in q.items()} for q in perms],
                info, time.perf_counter() - start)


def _reweighted(z, weights) -> np.ndarray:
  """The merge matrix of `z` with model m's members weighted by `weights[m]` in each group."""
  n = z.merge.shape[0]
  w = np.repeat(np.asarray(weights, np.float64), n)[None, :] * z.unmerge.T
  return w / np.maximum(w.sum(1, keepdims=True), 1e-12)


def _same_model(z) -> int:
  """Groups of a zip whose members all come from one model."""
  n = z.merge.shape[0]
  return sum(1 for g in z.groups if len({m // n for m in g}) == 1 and len(g) > 1)


def _site_maps(module, spec, tree, x, zips):
  """`{REPAIR site: [merge matrix of model m]}`: what takes a parent's unit statistics at
  each site to the zipped units (the merge matrices of the permutation of its bias)."""
  return {s: [zips[p].merge_of(0), zips[p].merge_of(1)]
          for s, p in _site_perms(module, spec, tree, x).items()}


def _branch_maps(module, spec, tree, x, zips, zipped, m):
  """`_site_maps` for branch m of a partial zip: zipped sites take both parents' statistics
  through the merge matrices, the others parent m's own."""
  maps = _site_maps(module, spec, tree, x, zips)
  for s, p in _site_perms(module, spec, tree, x).items():
    if p not in zipped:
      n = zips[p].merge.shape[0]
      maps[s] = [np.eye(n) * (k == m) for k in range(2)]
  return maps


def _site_perms(module, spec, tree, x) -> dict:
  """`{REPAIR site: the permutation of its units}` (sites no permutation moves left out)."""
  perms = {s: spec.axes_to_perm.get(f"{s}/bias", (None,))[-1]
           for s in repair_sites(spec, module, tree, x[:1])}
  return {s: p for s, p in perms.items() if p is not None}


def merge(module, spec, variables: Sequence[dict], method: str = "weight", data=None,
          **kwargs) -> dict:
  """The merged variables of `merge_models` (see it for the arguments)."""
  return merge_models(module, spec, variables, method, data, **kwargs).variables
