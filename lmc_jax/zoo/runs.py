"""Zoo runs on disk: where a zoo lives, reusing a finished one, retraining on request."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List

import jax

from lmc_jax.config import ZooConfig, default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.result_files import BARRIER_JSON, ZOO_JSON
from lmc_jax.zoo.io import read_zoo_json, save_zoo
from lmc_jax.zoo.training import train_zoo

STALE_RESULTS = (BARRIER_JSON,)


def zoo_family(config: ZooConfig) -> str:
  """`moons`, or `cifar10_sgd`, `moons_kaiming_normal_rmsprop`, `cifar10_resnet20`: the
  dataset, the architecture and its norm where not the default, then the init and optimizer
  where they differ from the dataset's defaults."""
  default = default_config(config.dataset)
  parts = [config.dataset]
  if config.arch != "mlp":
    parts.append(config.arch)
    if config.norm != "batchnorm":
      parts.append(config.norm)
  if config.init != default.init:
    parts.append(config.init)
  if config.optimizer != default.optimizer:
    parts.append(config.optimizer)
  return "_".join(parts)


def zoo_dirname(config: ZooConfig) -> str:
  """`moons_w512`, `cifar10_sgd_w128`: family and hidden width (the first; the study's
  nets have equal widths)."""
  return f"{zoo_family(config)}_w{config.hidden[0]}"


def run_zoo(config: ZooConfig, directory, overwrite: bool = False, data_dir="data",
            eval_every: int = 0) -> dict:
  """Trains the zoo `config` into `directory` and returns its zoo.json dict (None on every
  process but the first when several hosts train it together).

  A finished zoo with the same config is reused as it is. A zoo with another config is
  an error unless `overwrite`; then it is replaced and results computed from the old
  one (barrier.json) are removed only after the new zoo is in place.
  """
  directory = Path(directory)
  if (directory / ZOO_JSON).exists():
    doc = read_zoo_json(directory)
    same = ZooConfig.from_dict(doc["config"]) == config
    if same and not overwrite:
      logging.info("%s already holds this zoo; reusing it (pass --overwrite to retrain).",
                   directory)
      return doc
    if not overwrite:
      raise LmcError(f"{directory} already holds a zoo with another config; pass --overwrite to "
                     "replace it, or another --out.")
  elif directory.exists() and any(directory.iterdir()):
    if not overwrite:
      raise LmcError(f"{directory} exists and is not a zoo; pass another --out, or --overwrite "
                     "to write the zoo into it.")
  dataset = load_dataset(config, data_dir)
  start = time.perf_counter()
  zoo = train_zoo(config, dataset, label=str(directory), eval_every=eval_every)
  seconds = time.perf_counter() - start
  if jax.process_index() != 0:  # several hosts trained it together; the first one writes
    return None
  save_zoo(directory, config, zoo.params, zoo.metrics, history=zoo.history,
           extra={"train_seconds": seconds, "data_source": dataset.source})
  for name in STALE_RESULTS:
    (directory / name).unlink(missing_ok=True)
  for k, m in enumerate(zoo.metrics):
    if m["diverged"]:
      logging.warning("%s: model %d diverged (non-finite loss); it is marked in zoo.json and "
                      "left out of every statistic.", directory, k)
  collapsed = [k for k, m in enumerate(zoo.metrics) if m.get("collapsed")]
  if collapsed:
    logging.warning("%s: %d of %d models collapsed to chance test accuracy (models %s); they "
                    "are marked in zoo.json, counted in the tables and kept in every statistic.",
                    directory, len(collapsed), len(zoo.metrics), collapsed)
  return read_zoo_json(directory)


def find_zoos(root) -> List[Path]:
  """`root` and its direct subdirectories that hold a zoo.json, sorted (deeper folders,
  such as another study's runs, are left alone)."""
  root = Path(root)
  if not root.exists():
    return []
  found = [p.parent for p in [root / ZOO_JSON, *root.glob(f"*/{ZOO_JSON}")] if p.is_file()]
  return sorted(found, key=lambda p: (str(p.parent), _width_key(p), p.name))


def _width_key(path: Path):
  try:
    return json.loads((path / ZOO_JSON).read_text())["config"]["hidden"][0]
  except (OSError, ValueError, KeyError, IndexError, TypeError):
    return 0
