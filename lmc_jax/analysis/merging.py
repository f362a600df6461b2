"""Merging across zoos trained on different parts of the data (`experiments.merge`): one
model from each zoo per pairing, every method, REPAIR on and off, each merged network and
each parent scored on the whole test split (joint and per-part accuracy), the ensemble
beside them, and the curve along alpha for two models.
"""
from __future__ import annotations

import logging
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from lmc_jax.align.registry import MethodSettings
from lmc_jax.data.datasets import load_dataset
from lmc_jax.data.splits import part_classes
from lmc_jax.errors import LmcError
from lmc_jax.merge_records import MergeEntry, MergeResult
from lmc_jax.merging.combine import NAIVE, ZIP, finish, merge_models, merge_weights, weighted_mean
from lmc_jax.merging.evaluate import ensemble_logits, predict_logits, scores
from lmc_jax.merging.partial import branch_logits, branch_scores, zip_depth
from lmc_jax.zoo.handle import ZooHandle
from lmc_jax.zoo.io import package_versions


def check_compatible(zoos: Sequence[ZooHandle], flag: str = "--zoo") -> None:
  """The zoos share dataset, architecture and widths, or one sentence naming `flag`."""
  if len(zoos) < 2:
    raise LmcError(f"{flag} names {len(zoos)} zoo(s); merging needs at least 2, comma-separated.")
  first = zoos[0].config
  for z in zoos[1:]:
    c = z.config
    for what, a, b in (("dataset", first.data.dataset, c.data.dataset),
                       ("architecture", first.model.arch, c.model.arch),
                       ("widths", list(first.model.hidden), list(c.model.hidden)),
                       ("norm", (first.model.norm, first.model.layernorm),
                        (c.model.norm, c.model.layernorm))):
      if a != b:
        raise LmcError(f"{flag}: {zoos[0].directory} and {z.directory} differ in {what} ({a} vs "
                       f"{b}); merge zoos of one dataset, architecture and width.")


def pairings_for(zoos: Sequence[ZooHandle], models: Optional[Sequence[int]], pairs: int,
                 seed: int = 0) -> np.ndarray:
  """`(P, Z)`: `models` (one index per zoo) alone, else `pairs` pairings drawn without
  repeats by `seed` from every combination of usable models (0: all of them)."""
  if models is not None:
    if len(models) != len(zoos):
      raise LmcError(f"--models names {len(models)} model(s) for {len(zoos)} zoos; give one "
                     "index per zoo.")
    for z, k in zip(zoos, models):
      if not 0 <= k < z.num_models:
        raise LmcError(f"--models: model {k} is not in {z.directory} (models 0.."
                       f"{z.num_models - 1}); pass an index within that range.")
      if k not in z.usable:
        raise LmcError(f"--models: model {k} of {z.directory} diverged; pass another index.")
    return np.array([list(models)], np.int64)
  grids = np.meshgrid(*[np.array(z.usable) for z in zoos], indexing="ij")
  every = np.stack([g.ravel() for g in grids], 1)
  if pairs and pairs < len(every):
    pick = np.sort(np.random.default_rng(seed).choice(len(every), pairs, replace=False))
    every = every[pick]
  return every.astype(np.int64)


class MergeRun(NamedTuple):
  result: MergeResult
  merged: Dict[str, dict]  # method (+repair) -> merged variables of the first pairing


def _parts(zoo: ZooHandle) -> tuple:
  info_classes = zoo.info.num_classes
  counts = zoo.record.train_class_counts
  return part_classes(zoo.config.data.train_split, counts, info_classes)


def run_merge(zoos: Sequence[ZooHandle], pairings: np.ndarray, methods: Sequence[str],
              repair: bool = False, num_alphas: int = 11,
              settings: Optional[MethodSettings] = None, data_dir="data",
              zip_alpha: float = 0.3, zip_beta: float = 0.125, log=logging.info,
              zip_layers: Optional[int] = None) -> MergeRun:
  """Merges every pairing by every method (see the module docstring). With `zip_layers`
  below the network's depth, zip is the partial zip `zip<K>` (two branches, scored on
  their side-by-side logits: `merging.partial.branch_scores`)."""
  settings = settings if settings is not None else MethodSettings()
  first = zoos[0]
  data = load_dataset(first.config.data.replace(train_split=""), data_dir)  # every part's data
  order = np.random.default_rng(settings.seed).permutation(len(data.y_train))
  fit = order[:settings.fit_samples]
  fit_data = (data.x_train[fit], data.y_train[fit])
  x_test, y_test = data.x_test, data.y_test
  parts = [_parts(z) for z in zoos]
  joined = [c for p in parts for c in p]
  if len(joined) != len(set(joined)) and any(z.config.data.train_split.startswith("classes")
                                             for z in zoos):
    logging.warning("the zoos' classes overlap (%s); per-part accuracies then share examples",
                    parts)
  alphas = np.linspace(0, 1, num_alphas)
  two = len(zoos) == 2
  model = first.model
  partial = zip_layers is not None and zip_layers < zip_depth(first.spec)
  label = {m: (f"zip{zip_layers}" if m == ZIP and partial else m) for m in methods}
  names = [label[m] + suffix for m in methods
           for suffix in ("",) + (("+repair",) if repair else ())]
  P, Z, cols = len(pairings), len(zoos), 1 + len(zoos)
  acc = {n: np.full((P, cols), np.nan) for n in names}
  loss = {n: np.full(P, np.nan) for n in names}
  curve_acc = {n: np.full((P, num_alphas), np.nan) for n in names}
  curve_loss = {n: np.full((P, num_alphas), np.nan) for n in names}
  seconds = {n: np.zeros(P) for n in names}
  perms: Dict[str, dict] = {n: {} for n in names}
  parent_acc, parent_loss = np.zeros((Z, P, cols)), np.zeros((Z, P))
  ens_acc, ens_loss = np.zeros((P, cols)), np.zeros(P)
  merged_first: Dict[str, dict] = {}

  def score(tree, branches=False):
    s = (branch_scores(branch_logits(model, tree, x_test), y_test, parts) if branches
         else scores(predict_logits(model, tree, x_test), y_test, parts))
    return s, np.array([s.acc, *s.parts])

  for i, row in enumerate(pairings):
    parents = [z.member(int(k)) for z, k in zip(zoos, row)]
    logits = [predict_logits(model, p, x_test) for p in parents]
    for k, lg in enumerate(logits):
      s = scores(lg, y_test, parts)
      parent_acc[k, i], parent_loss[k, i] = [s.acc, *s.parts], s.loss
    s = scores(ensemble_logits(logits), y_test, parts)
    ens_acc[i], ens_loss[i] = [s.acc, *s.parts], s.loss
    for method in methods:
      for fix in ((False, True) if repair else (False,)):
        name = label[method] + ("+repair" if fix else "")
        out = merge_models(model, first.spec, parents, method, fit_data, repair=fix,
                           settings=settings, zip_alpha=zip_alpha, zip_beta=zip_beta,
                           zip_layers=zip_layers if method == ZIP else None)
        seconds[name][i] = out.seconds
        s, acc[name][i] = score(out.variables, "branches" in out.info)
        loss[name][i] = s.loss
        if i == 0:
          merged_first[name] = out.variables
          if method not in (NAIVE, ZIP):
            perms[name] = {p: [np.asarray(q[p]).tolist() for q in out.perms] for p in out.perms[0]}
        if two and method != ZIP:
          for a, alpha in enumerate(alphas):
            w = merge_weights(2, float(alpha))
            tree = finish(model, first.spec, weighted_mean(out.aligned, w), out.aligned, w,
                          fit_data[0], fix)
            s, row_acc = score(tree)
            curve_acc[name][i, a], curve_loss[name][i, a] = row_acc[0], s.loss
    log(f"pairing {i + 1}/{P} {row.tolist()}: " + ", ".join(
        f"{n} {acc[n][i, 0]:.3f}" for n in names) + f", ensemble {ens_acc[i, 0]:.3f}")
  entries = {n: MergeEntry(acc[n], loss[n], curve_acc[n], curve_loss[n], seconds[n], perms[n])
             for n in names}
  result = MergeResult(tuple(str(z.directory) for z in zoos),
                       tuple(z.config.data.train_split for z in zoos), parts, pairings, alphas,
                       {"methods": list(methods), "repair": repair, "num_alphas": num_alphas,
                        "seed": settings.seed, "fit_samples": settings.fit_samples,
                        "max_iter": settings.max_iter, "signs": bool(settings.signs),
                        "zip_alpha": zip_alpha,
                        "zip_beta": zip_beta, "zip_layers": zip_layers,
                        "test_samples": int(len(y_test))},
                       parent_acc, parent_loss, ens_acc, ens_loss, entries, package_versions())
  return MergeRun(result, merged_first)


def summary_rows(result: MergeResult) -> List[dict]:
  """One row per network (each parent, the ensemble, each method): median and quartiles
  over pairings of joint accuracy, the median of each part's accuracy and of the loss."""
  def row(name, acc, loss):
    q1, med, q3 = np.nanpercentile(acc[:, 0], [25, 50, 75])
    r = {"network": name, "joint_acc": med, "q1": q1, "q3": q3,
         "loss": float(np.nanmedian(loss))}
    for k in range(acc.shape[1] - 1):
      r[f"part{k}_acc"] = float(np.nanmedian(acc[:, 1 + k]))
    return r
  rows = [row(f"parent {k} ({s or 'all'})", result.parent_acc[k], result.parent_loss[k])
          for k, s in enumerate(result.splits)]
  rows.append(row("ensemble", result.ensemble_acc, result.ensemble_loss))
  rows += [row(n, e.acc, e.loss) for n, e in result.methods.items()]
  return rows
