"""Naive and aligned interpolation curves of a zoo on disk, written to `barrier.json`.

`barrier.json` = {"alphas": [...], "split": "test",
  "naive": {"pairs": [[i, j], ...], "loss": [[A floats], ...], "acc": [...],
            "epsilon": [...], "barrier": [...], "rebasin_barrier": [...]},
  "aligned": {the same keys, plus "reference", "method", "max_iter", "sweeps"},
  "excluded": [diverged models], "params_sha256": the zoo's, "versions": {...}}
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.config import ZooConfig
from lmc_jax.datasets import dims_of, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.interpolation import Curves, all_pairs, default_alphas, pair_sweep
from lmc_jax.measures import MEASURES
from lmc_jax.permutation import flatten, spec_for_config, validate_spec
from lmc_jax.training import model_for
from lmc_jax.weight_matching import align_zoo
from lmc_jax.zoo_io import load_zoo, package_versions, read_zoo_json

BARRIER_JSON = "barrier.json"


def load_zoo_checked(directory):
  """Loads a zoo and checks its params against the model its config describes.

  Returns (config, model, params_stack, doc)."""
  config = ZooConfig.from_dict(read_zoo_json(directory)["config"])
  model, d_in = model_for(config), dims_of(config.dataset)[0]
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, d_in), np.float32)))
  expected = {k: v.shape for k, v in flatten(shapes["params"]).items()}
  config, params, doc = load_zoo(directory, expected_shapes=expected)
  validate_spec(spec_for_config(config), params, batch_dims=1)
  return config, model, params, doc


def curves_entry(curves: Curves) -> dict:
  entry = {"pairs": curves.pairs.tolist(), "loss": curves.loss.tolist(), "acc": curves.acc.tolist()}
  for name, fn in MEASURES.items():
    entry[name] = fn(curves.loss, curves.alphas).tolist()
  return entry


def usable_models(doc: dict, directory) -> list:
  """Indices of models that did not diverge; warns naming each one left out."""
  models = doc.get("models", [])
  excluded = [k for k, m in enumerate(models) if m.get("diverged")]
  for k in excluded:
    logging.warning("%s: model %d diverged (non-finite loss); it is left out of every "
                    "statistic and figure.", directory, k)
  return [k for k in range(len(models)) if k not in excluded]


def analyse_zoo(directory, reference: int = 0, max_iter: int = 50, seed: int = 0,
                split: str = "test", alphas: Optional[np.ndarray] = None,
                data_dir="data", matcher: str = "host") -> dict:
  """Naive curves and curves after weight matching every model to `reference`; writes
  `barrier.json` into the zoo directory (atomically) and returns its dict."""
  directory = Path(directory)
  config, model, params, doc = load_zoo_checked(directory)
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
  alphas = default_alphas() if alphas is None else np.asarray(alphas)
  pairs = all_pairs(n, exclude=set(range(n)) - set(usable))

  t0 = time.perf_counter()
  naive = pair_sweep(model, params, pairs, x, y, alphas)
  t1 = time.perf_counter()
  spec = spec_for_config(config)
  alignment = align_zoo(jax.random.key(seed), spec, params, reference, max_iter,
                        skip=set(range(n)) - set(usable), matcher=matcher)
  t2 = time.perf_counter()
  aligned = pair_sweep(model, alignment.params, pairs, x, y, alphas)
  t3 = time.perf_counter()

  result = {
      "zoo": str(directory), "split": split, "alphas": alphas.tolist(),
      "excluded": sorted(set(range(n)) - set(usable)),
      "naive": curves_entry(naive),
      "aligned": dict(curves_entry(aligned), reference=reference, method="weight_matching",
                      max_iter=max_iter, seed=seed,
                      sweeps=alignment.sweeps, matcher=matcher),
      "seconds": {"naive_sweep": t1 - t0, "alignment": t2 - t1, "aligned_sweep": t3 - t2},
      "params_sha256": doc["params_sha256"], "versions": package_versions(),
  }
  atomic_write_json(directory / BARRIER_JSON, result)
  return result
