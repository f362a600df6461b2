"""Datasets as in-memory numpy arrays, small enough to live on the device whole.

Every loader returns a `Dataset` whose arrays are float32 inputs `(n, d)` and int32
labels `(n,)`. Moons is generated from a seed, so it needs no download.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from lmc_jax.errors import LmcError

DATASETS = ("moons", "mnist", "cifar10")
# (input dimension, number of classes) of each dataset, known without loading it.
DATASET_DIMS = {"moons": (2, 2), "mnist": (784, 10), "cifar10": (3072, 10)}


class Dataset(NamedTuple):
  x_train: np.ndarray  # (n_train, d) float32
  y_train: np.ndarray  # (n_train,) int32
  x_test: np.ndarray  # (n_test, d) float32
  y_test: np.ndarray  # (n_test,) int32
  num_classes: int
  source: str = ""  # how results from it are labelled, e.g. "CIFAR-10 (JPEG re-encode)"
  # (H, W, C) of image data, whose rows are images flattened in HWC order; None otherwise.
  image_shape: Optional[Tuple[int, int, int]] = None

  @property
  def d_out(self) -> int:
    return logits_for(self.num_classes)


def logits_for(num_classes: int) -> int:
  """Logits a model needs: one for a binary problem (sigmoid), else one per class."""
  return 1 if num_classes == 2 else num_classes


def dims_of(name: str):
  """(input dimension, number of logits) of dataset `name`, without loading it."""
  if name not in DATASET_DIMS:
    raise LmcError(f"Unknown dataset {name!r}; use one of {', '.join(DATASETS)}.")
  d_in, classes = DATASET_DIMS[name]
  return d_in, logits_for(classes)


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
  if n_train < 2 or n_test < 2:
    raise LmcError(f"Moons needs at least 2 train and 2 test samples, got "
                   f"n_train={n_train}, n_test={n_test}.")
  if noise < 0:
    raise LmcError(f"Moons noise must be >= 0, got {noise}.")
  x_tr, y_tr = make_moons(n_train, noise, np.random.default_rng([seed, 0]))
  x_te, y_te = make_moons(n_test, noise, np.random.default_rng([seed, 1]))
  return Dataset(x_tr, y_tr, x_te, y_te, num_classes=2, source="Moons")


def _data_section(config):
  """The data fields of `config`: its `data` section, or the config itself where it is flat."""
  return getattr(config, "data", config)


def load_dataset(config, data_dir="data") -> Dataset:
  """The dataset a config (or its data section) names, cut to its `train_subset` /
  `test_subset` samples where those are set; files are looked up under `data_dir`."""
  data = _data_section(config)
  full = _load_full(data, data_dir)
  return subset(full, getattr(data, "train_subset", 0), getattr(data, "test_subset", 0),
                data.data_seed)


def subset(data: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
  """`data` with `n_train` training and `n_test` test samples drawn without replacement by
  `seed` (kept in their original order; 0 keeps a whole split)."""
  def cut(x, y, n, stream):
    if not n or n >= len(y):
      return x, y
    keep = np.sort(np.random.default_rng([seed, stream]).choice(len(y), n, replace=False))
    return x[keep], y[keep]
  x_tr, y_tr = cut(data.x_train, data.y_train, n_train, 2)
  x_te, y_te = cut(data.x_test, data.y_test, n_test, 3)
  return data._replace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def _load_full(config, data_dir) -> Dataset:
  if config.dataset == "moons":
    return moons(config.n_train, config.n_test, config.noise, config.data_seed)
  if config.dataset == "mnist":
    from lmc_jax.data.mnist import load_mnist_raw, normalise
    xtr, ytr, xte, yte = load_mnist_raw(data_dir)
    return Dataset(normalise(xtr), ytr.astype(np.int32), normalise(xte), yte.astype(np.int32), 10,
                   source="MNIST", image_shape=(28, 28, 1))
  if config.dataset == "cifar10":
    from lmc_jax.data import cifar10
    xtr, ytr, xte, yte, label = cifar10.load_cifar10_raw(data_dir)
    return Dataset(cifar10.normalise(xtr), ytr.astype(np.int32), cifar10.normalise(xte),
                   yte.astype(np.int32), 10, source=label, image_shape=cifar10.IMAGE_SHAPE)
  raise LmcError(f"Unknown dataset {config.dataset!r}; use one of {', '.join(DATASETS)}.")
