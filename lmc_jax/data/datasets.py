"""Datasets as in-memory numpy arrays, small enough to live on the device whole.

Every loader returns a `Dataset` whose arrays are float32 inputs `(n, d)` and int32
labels `(n,)`. Moons and modular addition (`data.modular`) are generated from a seed, so they
need no download. A dataset is named `moons`, `modular_addition`, `mnist`, `cifar10`,
`npz:PATH` for a user's own `.npz` file (see `data.npz`), or `tfds:NAME` for an
image-classification dataset prepared with tensorflow-datasets in the data directory (see
`data.tfds`); `dataset_info` tells its sizes and shapes without loading its arrays.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Tuple

import numpy as np

from lmc_jax.config import ConfigError
from lmc_jax.data import cifar10, modular
from lmc_jax.data.dataset import Dataset, DatasetInfo, logits_for
from lmc_jax.data.mnist import load_mnist_raw, normalise
from lmc_jax.data.npz import load_npz, npz_info
from lmc_jax.data.splits import SplitError, parse_split, split_indices
from lmc_jax.data.tfds import is_tfds, load_tfds_dataset, tfds_info, tfds_name
from lmc_jax.errors import LmcError

__all__ = ["Dataset", "DatasetInfo", "logits_for", "dataset_info", "dataset_slug", "dims_of",
           "held_out_rows", "is_npz", "load_dataset", "moons", "npz_path", "subset", "split_part",
           "training_labels"]

DATASETS = ("moons", "mnist", "cifar10", modular.NAME)
NPZ_PREFIX = "npz:"


# The datasets whose arrays have fixed sizes, at full size (before any subset).
_FIXED_INFO = {
    "mnist": DatasetInfo(784, 10, (28, 28, 1), 60000, 10000, "mnist"),
    "cifar10": DatasetInfo(3072, 10, (32, 32, 3), 50000, 10000, "cifar10"),
}
# (input dimension, number of classes) of each built-in dataset, known without loading it.
DATASET_DIMS = {"moons": (2, 2), **{k: (i.d_in, i.num_classes) for k, i in _FIXED_INFO.items()}}


def _unknown(name) -> LmcError:
  return LmcError(f"Unknown dataset {name!r}; use one of {', '.join(DATASETS)}, npz:PATH "
                  "for a .npz file of your own, or tfds:NAME for a dataset prepared with TFDS.")


def is_npz(name) -> bool:
  """Whether `name` names a user's .npz file (`npz:PATH`)."""
  return isinstance(name, str) and name.startswith(NPZ_PREFIX)


def npz_path(name: str) -> Path:
  """The file `npz:PATH` names, `~` expanded (a relative PATH is from the working directory)."""
  if not is_npz(name):
    raise LmcError(f"Dataset {name!r} is not an npz dataset; name one as npz:PATH.")
  rest = name[len(NPZ_PREFIX):]
  if not rest.strip():
    raise LmcError(f"Dataset {name!r} names no file; write npz:PATH with PATH the .npz file.")
  return Path(rest).expanduser()


def dataset_slug(name: str) -> str:
  """A label for directory and file names: a built-in dataset's name, or `npz_<stem>` with
  every character of the file's stem outside [A-Za-z0-9_-] replaced by `_`."""
  if is_npz(name):
    return "npz_" + re.sub(r"[^A-Za-z0-9_-]", "_", npz_path(name).stem)
  if is_tfds(name):
    return "tfds_" + re.sub(r"[^A-Za-z0-9_-]", "_", tfds_name(name))
  if name not in DATASETS:
    raise _unknown(name)
  return name


def dims_of(name: str):
  """(input dimension, number of logits) of built-in dataset `name`, without loading it."""
  if is_npz(name) or is_tfds(name):
    raise LmcError(f"Dataset {name!r} has no fixed dimensions; read them from its files with "
                   "dataset_info(config).")
  if name not in DATASET_DIMS:
    raise _unknown(name)
  d_in, classes = DATASET_DIMS[name]
  return d_in, logits_for(classes)


def _data_section(config):
  """The data fields of `config`: its `data` section, or the config itself where it is flat."""
  return getattr(config, "data", config)


def _kept(n: int, wanted: int) -> int:
  """Samples a split of `n` keeps when cut to `wanted` (0 or at least `n`: all of them)."""
  return wanted if wanted and wanted < n else n


def dataset_info(config, data_dir="data") -> DatasetInfo:
  """What a config (or its data section) trains and evaluates on, with its subsets applied,
  without loading arrays: Moons from its fields, MNIST and CIFAR-10 from their official
  sizes, an npz file from its `.npy` headers and its labels. `data_dir` is where the
  built-in datasets live; it is not read (their sizes are known). With a `train_split`,
  `n_train` is the size before the split (an upper bound: the split's size needs the
  labels, see `training_labels`); labels it names outside the dataset's are refused here
  (`ConfigError` naming `data.train_split`)."""
  data = _data_section(config)
  name = data.dataset
  if name == "moons":
    _check_moons(data.n_train, data.n_test, data.noise)
    full = DatasetInfo(2, 2, None, data.n_train, data.n_test, name)
  elif name == modular.NAME:
    n_train = modular.train_size(data.modulus, data.train_fraction)
    full = DatasetInfo(modular.TOKENS_PER_ROW, data.modulus, None, n_train,
                       data.modulus ** 2 - n_train, name, vocab=data.modulus + 1)
  elif name in _FIXED_INFO:
    full = _FIXED_INFO[name]
  elif is_npz(name):
    full = npz_info(npz_path(name))._replace(name=name)
  elif is_tfds(name):  # from the info TFDS keeps on disk (its data directory: `data.tfds`)
    shape, classes, n_train, n_test = tfds_info(tfds_name(name), _tfds_dir(data_dir))
    full = DatasetInfo(int(np.prod(shape)), classes, shape, n_train, n_test, name)
  else:
    raise _unknown(name)
  _check_split_labels(getattr(data, "train_split", ""), full.num_classes)
  return full._replace(n_train=_kept(full.n_train, getattr(data, "train_subset", 0)),
                       n_test=_kept(full.n_test, getattr(data, "test_subset", 0)))


def make_moons(n: int, noise: float, rng: np.random.Generator):
  """Two interleaving half circles with Gaussian noise (as sklearn's make_moons).

  Returns x (n, 2) float32 and y (n,) int32; class 0 is the upper arc.
  """
  n_out = n // 2
  n_in = n - n_out
  t_out = np.linspace(0, np.pi, n_out)
  t_in = np.linspace(0, np.pi, n_in)
  x = np.concatenate([
      np.stack([np.cos(t_out), np.sin(t_out)], 1),
      np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], 1),
  ])
  y = np.concatenate([np.zeros(n_out, np.int32), np.ones(n_in, np.int32)])
  order = rng.permutation(n)
  x, y = x[order], y[order]
  x = x + rng.normal(scale=noise, size=x.shape)
  return x.astype(np.float32), y


def moons(n_train: int = 512, n_test: int = 512, noise: float = 0.1, seed: int = 0) -> Dataset:
  """The study's Moons data; train and test come from independent streams of `seed`.

  numpy's PCG64 generator is specified bit for bit, so a seed gives the same arrays on
  every machine.
  """
  _check_moons(n_train, n_test, noise)
  x_tr, y_tr = make_moons(n_train, noise, np.random.default_rng([seed, 0]))
  x_te, y_te = make_moons(n_test, noise, np.random.default_rng([seed, 1]))
  return Dataset(x_tr, y_tr, x_te, y_te, num_classes=2, source="Moons")


def _check_moons(n_train: int, n_test: int, noise: float) -> None:
  if n_train < 2 or n_test < 2:
    raise LmcError(f"Moons needs at least 2 train and 2 test samples, got "
                   f"n_train={n_train}, n_test={n_test}.")
  if noise < 0:
    raise LmcError(f"Moons noise must be >= 0, got {noise}.")


def load_dataset(config, data_dir="data") -> Dataset:
  """The dataset a config (or its data section) names, cut to its `train_subset` /
  `test_subset` samples where those are set; files are looked up under `data_dir`."""
  data = _data_section(config)
  cut = _load_full(data, data_dir,  # data_dir is not used for npz:PATH
                   lambda full: subset(full, getattr(data, "train_subset", 0),
                                       getattr(data, "test_subset", 0), data.data_seed))
  return split_part(cut, getattr(data, "train_split", ""), data.data_seed)


def _check_split_labels(spec: str, num_classes: int) -> None:
  if spec and parse_split(spec).kind == "classes":
    outside = [c for c in parse_split(spec).labels if c >= num_classes]
    if outside:
      raise ConfigError("data.train_split", f"is {spec!r}, naming label(s) {outside} of a "
                        f"dataset with {num_classes} classes (labels 0..{num_classes - 1})")


def _split_keep(spec: str, labels, num_classes: int, seed: int):
  try:
    return split_indices(spec, labels, num_classes, seed)
  except SplitError as e:
    raise ConfigError("data.train_split", str(e)) from None


def split_part(data: Dataset, spec: str, seed: int = 0) -> Dataset:
  """`data` with its training split cut to part `spec` (`data.splits`; '' keeps it whole);
  the test split is whole. A part that would be empty is a `ConfigError` naming
  `data.train_split`."""
  if not spec:
    return data
  keep = _split_keep(spec, data.y_train, data.num_classes, seed)
  return data._replace(x_train=data.x_train[keep], y_train=data.y_train[keep])


def training_labels(config, data_dir="data"):
  """`(n,)` the labels a config (or its data section) trains on, its subset and split
  applied, read without keeping the inputs: checks a `train_split` before any work."""
  data = _data_section(config)
  full = _load_full(data, data_dir)
  y = full.y_train
  n = getattr(data, "train_subset", 0)
  if _kept(len(y), n) != len(y):
    y = y[np.sort(np.random.default_rng([data.data_seed, 2]).choice(len(y), n, replace=False))]
  spec = getattr(data, "train_split", "")
  return y[_split_keep(spec, y, full.num_classes, data.data_seed)] if spec else y


def subset(data: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
  """`data` with `n_train` training and `n_test` test samples drawn without replacement by
  `seed` (kept in their original order; 0 keeps a whole split)."""
  def cut(x, y, n, stream):
    keep = _subset_rows(len(y), n, seed, stream)
    return (x, y) if keep is None else (x[keep], y[keep])
  x_tr, y_tr = cut(data.x_train, data.y_train, n_train, 2)
  x_te, y_te = cut(data.x_test, data.y_test, n_test, 3)
  return data._replace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def _subset_rows(total: int, n: int, seed: int, stream: int):
  """The sorted rows of `total` a subset of `n` keeps, or None where it keeps them all."""
  if _kept(total, n) == total:
    return None
  return np.sort(np.random.default_rng([seed, stream]).choice(total, n, replace=False))


def held_out_rows(config, data_dir="data") -> Tuple[np.ndarray, np.ndarray]:
  """(x, y): the training rows a zoo of `config` (or its data section) did not train on,
  those its `train_subset` leaves out; none where it trained on every row."""
  data = _data_section(config)
  full = _load_full(data, data_dir)
  keep = _subset_rows(len(full.y_train), getattr(data, "train_subset", 0), data.data_seed, 2)
  rest = np.ones(len(full.y_train), bool)
  if keep is not None:
    rest[keep] = False
  else:
    rest[:] = False
  return full.x_train[rest], full.y_train[rest]


def _tfds_dir(data_dir):
  """TFDS's data directory: `data_dir` where a caller passed one other than the default,
  else the one the entry point set (`data.tfds.use_data_dir`)."""
  return None if data_dir in (None, "data") else data_dir


def _load_full(data, data_dir, cut: Callable[[Dataset], Dataset] = lambda full: full
               ) -> Dataset:
  """The dataset `data` names, whole, with `cut` (e.g. a `subset`) applied; MNIST's and
  CIFAR-10's images are cut while still bytes and only the rows kept are normalised (each
  row on its own, so the same values as cutting afterwards)."""
  if is_npz(data.dataset):
    return cut(load_npz(npz_path(data.dataset)))
  if is_tfds(data.dataset):
    name = tfds_name(data.dataset)
    xtr, ytr, xte, yte, classes, shape = load_tfds_dataset(name, _tfds_dir(data_dir))
    return cut(Dataset(xtr, ytr, xte, yte, classes, source=f"TFDS {name}", image_shape=shape))
  if data.dataset == "moons":
    return cut(moons(data.n_train, data.n_test, data.noise, data.data_seed))
  if data.dataset == modular.NAME:
    return cut(modular.modular_addition(data.modulus, data.train_fraction, data.data_seed))
  if data.dataset == "mnist":
    xtr, ytr, xte, yte = load_mnist_raw(data_dir)
    raw = cut(Dataset(xtr, ytr.astype(np.int32), xte, yte.astype(np.int32), 10, source="MNIST",
                      image_shape=_FIXED_INFO["mnist"].image_shape))
    return raw._replace(x_train=normalise(raw.x_train), x_test=normalise(raw.x_test))
  if data.dataset == "cifar10":
    xtr, ytr, xte, yte, label = cifar10.load_cifar10_raw(data_dir)
    raw = cut(Dataset(xtr, ytr.astype(np.int32), xte, yte.astype(np.int32), 10, source=label,
                      image_shape=cifar10.IMAGE_SHAPE))
    return raw._replace(x_train=cifar10.normalise(raw.x_train),
                        x_test=cifar10.normalise(raw.x_test))
  raise _unknown(data.dataset)
