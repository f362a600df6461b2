"""Naive and aligned interpolation curves of a zoo on disk, written to `barrier.json`.

`barrier.json` = {"alphas": [...], "split": "test", "reference": r,
  "naive": {"pairs": [[i, j], ...], "loss": [[A floats], ...], "acc": [...],
            "epsilon": [...], "barrier": [...], "rebasin_barrier": [...]},
  "methods": {"weight": {the same keys, plus "reference", "settings", "seconds",
                         "sweep_seconds", "info", "fraction_moved"},
              "activation": ..., "weight+repair": {curves after REPAIR}, ...},
  "aligned": the weight entry's curves with "reference", "method", "max_iter", "sweeps",
  "diagnostics": {...} (optional),
  "excluded": [diverged models], "params_sha256": the zoo's, "versions": {...}}
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import jax
import numpy as np

from lmc_jax.align.diagnostics import alignment_diagnostics, fraction_moved
from lmc_jax.align.registry import MethodResult, MethodSettings, align_by, check_methods
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import dims_of, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import Curves, all_pairs, default_alphas, pair_sweep
from lmc_jax.lmc.measures import MEASURES, curves_entry
from lmc_jax.align.spec import permute_zoo, spec_for_config, validate_spec
from lmc_jax.tree_utils import flatten
from lmc_jax.lmc.repair import repaired_pair_sweep
from lmc_jax.zoo.io import load_zoo_checked, package_versions, usable_models

BARRIER_JSON = "barrier.json"


def _previous(path: Path, doc: dict, split: str, reference: int, alphas) -> Optional[dict]:
  """The zoo's barrier.json if it was computed from these params with these settings."""
  try:
    old = json.loads(path.read_text())
    if (old.get("params_sha256") == doc["params_sha256"] and old.get("split") == split
        and old.get("reference") == reference and np.allclose(old["alphas"], alphas)
        and "naive" in old):
      return old
  except (OSError, ValueError, KeyError, TypeError):
    pass
  return None


def _method_entry(curves: Curves, reference: int, settings: dict, result: MethodResult,
                  sweep_seconds: float) -> dict:
  return dict(curves_entry(curves), reference=reference, settings=settings,
              seconds=result.seconds, sweep_seconds=sweep_seconds, info=result.info,
              fraction_moved=[fraction_moved(p) for p in result.perms],
              perms=[{p: np.asarray(v).tolist() for p, v in pm.items()} for pm in result.perms])


def analyse_zoo(directory, reference: int = 0, split: str = "test",
                alphas: Optional[np.ndarray] = None, data_dir="data",
                methods: Sequence[str] = ("weight",), repair: bool = False,
                diagnostics: bool = False, settings: MethodSettings = MethodSettings(),
                recompute: bool = False) -> dict:
  """Naive curves and curves after each alignment method in `methods`; writes
  `barrier.json` into the zoo directory (atomically) and returns its dict.

  `weight` always runs (it fills `aligned`, the study's measure). With `repair`, every
  set of curves is also measured after REPAIR (entries `<name>+repair`, `naive+repair`).
  Entries already in a barrier.json computed from the same params, split, reference and
  method settings are kept as they are unless `recompute`.
  """
  directory = Path(directory)
  methods = check_methods(["weight"] + [m for m in methods if m != "weight"])
  config, model, params, doc = load_zoo_checked(directory)
  validate_spec(spec_for_config(config), params, batch_dims=1)
  if split not in ("test", "train"):
    raise LmcError(f"Unknown split {split!r}; use 'test' or 'train'.")
  n = doc["num_models"]
  usable = usable_models(doc, directory)
  if len(usable) < 2:
    raise LmcError(f"{directory} has {len(usable)} usable model(s); comparing needs at least 2, "
                   "so train the zoo with --num_models >= 2.")
  if not 0 <= reference < n:
    raise LmcError(f"Reference model {reference} is not in {directory} (models 0..{n - 1}); "
                   "pass --reference within that range.")
  if reference not in usable:
    raise LmcError(f"Reference model {reference} of {directory} diverged; pass another "
                   f"--reference, e.g. {usable[0]}.")
  data = load_dataset(config, data_dir)
  x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
  fit_x, fit_y = data.x_train, data.y_train
  alphas = default_alphas() if alphas is None else np.asarray(alphas)
  skip = set(range(n)) - set(usable)
  pairs = all_pairs(n, exclude=skip)
  spec = spec_for_config(config)

  old = None if recompute else _previous(directory / BARRIER_JSON, doc, split, reference, alphas)
  if old is None:
    t0 = time.perf_counter()
    naive = pair_sweep(model, params, pairs, x, y, alphas)
    result = {"zoo": str(directory), "split": split, "reference": reference,
              "alphas": alphas.tolist(), "excluded": sorted(skip),
              "naive": curves_entry(naive), "methods": {},
              "seconds": {"naive_sweep": time.perf_counter() - t0}}
  else:
    result = old
    result.setdefault("methods", {})
  kept = []
  for name in methods:
    wanted = settings.for_method(name)
    entry = result["methods"].get(name)
    if entry is not None and entry.get("settings") == wanted and "perms" in entry:
      kept.append(name)
      aligned = permute_zoo(spec, [{p: np.asarray(v) for p, v in pm.items()}
                                   for pm in entry["perms"]], params)
    elif entry is not None and entry.get("settings") == wanted and "skipped" in entry:
      kept.append(name)
      continue
    else:
      logging.info("%s: aligning by %s", directory, name)
      try:
        res = align_by(name, model, spec, params, reference, skip, fit_x, fit_y, x, y, settings)
      except LmcError as e:
        if len(methods) == 1:
          raise
        logging.warning("%s: %s skipped: %s", directory, name, e)
        result["methods"][name] = {"skipped": str(e), "settings": wanted}
        result["methods"].pop(f"{name}+repair", None)
        continue
      t = time.perf_counter()
      curves = pair_sweep(model, res.params, pairs, x, y, alphas)
      result["methods"][name] = _method_entry(curves, reference, wanted, res,
                                              time.perf_counter() - t)
      result["methods"].pop(f"{name}+repair", None)  # measured on the old alignment
      aligned = res.params
    old_repair = result["methods"].get(f"{name}+repair", {})
    if repair and old_repair.get("fit_samples") != settings.fit_samples:
      repaired = repaired_pair_sweep(model, aligned, pairs, fit_x[:settings.fit_samples], x, y,
                                     alphas)
      result["methods"][f"{name}+repair"] = dict(curves_entry(repaired), reference=reference,
                                                 settings=wanted, fit_samples=settings.fit_samples)
  if repair and (result["methods"].get("naive+repair", {}).get("fit_samples")
                 != settings.fit_samples):
    repaired = repaired_pair_sweep(model, params, pairs, fit_x[:settings.fit_samples], x, y,
                                   alphas)
    result["methods"]["naive+repair"] = dict(curves_entry(repaired),
                                             fit_samples=settings.fit_samples)
  if kept:
    logging.info("%s: kept the %s results already in %s (pass --recompute to redo them)",
                 directory, ", ".join(kept), BARRIER_JSON)
  weight = result["methods"]["weight"]
  result["aligned"] = dict({k: weight[k] for k in ("pairs", "loss", "acc", *MEASURES)},
                           reference=reference, method="weight_matching",
                           max_iter=weight["settings"]["max_iter"],
                           seed=weight["settings"]["seed"], matcher=weight["settings"]["matcher"],
                           sweeps=weight["info"]["sweeps"])
  wanted = {"seed": settings.seed, "max_iter": settings.max_iter,
            "fit_samples": settings.fit_samples}
  if diagnostics and result.get("diagnostics", {}).get("settings") != wanted:
    result["diagnostics"] = dict(
        alignment_diagnostics(model, spec, params, reference, usable,
                              fit_x[:settings.fit_samples], x, y, settings), settings=wanted)
  result["versions"] = package_versions()
  result["params_sha256"] = doc["params_sha256"]
  atomic_write_json(directory / BARRIER_JSON, result)
  return result

