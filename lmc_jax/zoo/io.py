"""A zoo on disk: a directory with `zoo.json` and `params.npz`.

`zoo.json` (`records.ZooRecord`) holds the config, the package versions, the SHA-256 of
`params.npz` and the metrics of every model. `params.npz` holds one array per parameter
leaf, keyed by its `/`-joined Flax path, axis 0 the model, so numpy alone can read it.
Each file is written to a temporary name and renamed into place, `params.npz` first; the
checksum in `zoo.json` ties the two, so a run killed mid-write never leaves a zoo that
loads.
"""
from __future__ import annotations

import json
import platform
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_json, atomic_write_npz, sha256_file
from lmc_jax.config import ConfigError, ZooConfig
from lmc_jax.data.datasets import dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import build_network
from lmc_jax.nn.forward import PARAMS
from lmc_jax.nn.models import abstract_variables
from lmc_jax.records import ModelMetrics, ZooRecord, zoo_fix
from lmc_jax.result_files import HISTORY_NPZ, PARAMS_NPZ, ZOO_JSON
from lmc_jax.schema import SchemaError
from lmc_jax.tree_utils import flatten, unflatten
from lmc_jax.version import __version__


def package_versions() -> dict:
  import flax
  import optax
  import scipy

  return {"lmc_jax": __version__, "jax": jax.__version__, "jaxlib": jax.lib.__version__,
          "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
          "scipy": scipy.__version__, "python": platform.python_version()}


def save_zoo(directory, config: ZooConfig, params_stack, metrics: Sequence[ModelMetrics],
             history: Optional[dict] = None, train_seconds: Optional[float] = None,
             data_source: str = "", train_class_counts=None) -> Path:
  """Writes a zoo directory; returns its path. `metrics`: one `ModelMetrics` per model (or
  a dict of its fields). `history` (`Zoo.history`: arrays with the epoch on axis 0 and the
  model on axis 1) goes to history.npz, before zoo.json. `train_class_counts` `(C,)`: the
  training examples per class the zoo saw (its subset and split applied)."""
  directory = Path(directory)
  if history:
    atomic_write_npz(directory / HISTORY_NPZ, history)
  flat = {k: np.asarray(v) for k, v in flatten(jax.device_get(params_stack)).items()}
  atomic_write_npz(directory / PARAMS_NPZ, flat)
  metrics = tuple(m if isinstance(m, ModelMetrics) else ModelMetrics(**m) for m in metrics)
  record = ZooRecord(config, sha256_file(directory / PARAMS_NPZ), metrics,
                     package_versions(), HISTORY_NPZ if history else None, train_seconds,
                     data_source,
                     None if train_class_counts is None else tuple(map(int, train_class_counts)))
  atomic_write_json(directory / ZOO_JSON, record.to_json())
  return directory


def read_zoo_json(directory) -> ZooRecord:
  """The record of a zoo directory's zoo.json; refuses a missing, unreadable or wrong one
  in one sentence naming the file (and the field) and the fix."""
  directory = Path(directory)
  if directory.exists() and not directory.is_dir():
    raise LmcError(f"{directory} is a file, not a zoo directory; pass the directory a zoo "
                   "was trained into (the one that holds zoo.json).")
  if not directory.is_dir():
    raise LmcError(f"Zoo directory {directory} does not exist; train one with "
                   f"`python -m experiments.zoo --out={directory.parent}` or pass an existing "
                   "--zoo.")
  path = directory / ZOO_JSON
  if not path.is_file():
    raise LmcError(f"{directory} holds no {ZOO_JSON}, so it is not a finished zoo; train it "
                   "again with `python -m experiments.zoo`.")
  try:
    doc = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise LmcError(f"{path} is not a valid zoo description (not JSON: {e}); "
                   f"{zoo_fix(path)}.") from None
  return ZooRecord.from_json(doc, path)


def read_variables(directory, record: ZooRecord, expected_shapes: Optional[dict] = None) -> dict:
  """The stacked variables dict of the zoo in `directory` whose zoo.json is `record`: numpy
  arrays, model on axis 0, checked against the checksum in zoo.json and, where
  `expected_shapes` (leaf path -> one model's shape) is given, against those shapes. A zoo
  written before every zoo held its whole variables dict (the study's MLP stored its params
  alone, as `Dense_0/kernel`, ...) is read as the variables dict `params/...`."""
  directory = Path(directory)
  npz = directory / PARAMS_NPZ
  if not npz.is_file():
    raise LmcError(f"{directory} has no {PARAMS_NPZ}; the zoo is incomplete, train it again.")
  if record.params_sha256 != sha256_file(npz):
    raise LmcError(f"{npz} does not match the checksum in {ZOO_JSON} (a run stopped while "
                   "writing, or the file was changed); train the zoo again.")
  try:
    with np.load(npz, allow_pickle=False) as f:
      flat = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise LmcError(f"{npz} is corrupt ({e}); train the zoo again.") from None
  if flat and not any(k.split("/", 1)[0] == PARAMS for k in flat):
    flat = {f"{PARAMS}/{k}": v for k, v in flat.items()}
  n = record.num_models
  for k, v in flat.items():
    if v.ndim < 1 or v.shape[0] != n:
      raise LmcError(f"{npz}: leaf {k} has shape {v.shape}, expected {n} models on axis 0; "
                     "train the zoo again.")
  if expected_shapes is not None:
    got = {k: tuple(v.shape[1:]) for k, v in flat.items()}
    want = {k: tuple(s) for k, s in expected_shapes.items()}
    if got != want:
      raise LmcError(f"{npz} does not fit the model in {ZOO_JSON}: leaves {sorted(got)} with "
                     f"shapes {got} but the config needs {want}; train the zoo again.")
  return unflatten(flat)


def network_of(record: ZooRecord, directory):
  """(the Flax module, the dataset's `DatasetInfo`, one model's leaf shapes by path) of the
  zoo whose zoo.json is `record`; what only building the network can tell is wrong (an
  architecture that is unknown or does not fit the dataset) is refused naming zoo.json's
  field."""
  info = dataset_info(record.config.data)
  try:
    model = build_network(record.config.model, info)
  except ConfigError as e:
    path = Path(directory) / ZOO_JSON
    raise SchemaError(path, f"config.{e.field}", e.problem, zoo_fix(path)) from None
  shapes = abstract_variables(model, info.d_in)
  return model, info, {k: v.shape for k, v in flatten(shapes).items()}


def load_zoo(directory, expected_shapes: Optional[dict] = None):
  """(config, variables, record) of the zoo in `directory` (see `read_variables`); the
  leaves' shapes are checked against `expected_shapes` where given. `zoo.handle.open_zoo`
  also checks them against the network and builds it."""
  record = read_zoo_json(directory)
  return record.config, read_variables(directory, record, expected_shapes), record


def load_history(directory) -> Optional[dict]:
  """The zoo's training history (see `train_zoo`) as numpy arrays, or None for a zoo saved
  without one."""
  path = Path(directory) / HISTORY_NPZ
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise LmcError(f"{path} is corrupt ({e}); train the zoo again.") from None
