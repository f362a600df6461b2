"""`modular_addition`: every sum `a + b mod p` of two residues, as rows of three tokens
`a b =` (token p is `=`), generated from a seed with no download.

The p * p pairs are shuffled by `data_seed` (numpy's PCG64, the same on every machine); the
first `round(train_fraction * p * p)` (at least one, at most all but one) are the training
set, the rest the test set. Inputs are float32 token ids `(n, 3)`, as every dataset of the
library stores float rows; labels `(n,)` int32 are `(a + b) % p`, one of p classes.
"""
from __future__ import annotations

import numpy as np

from lmc_jax.data.dataset import Dataset
from lmc_jax.errors import LmcError

NAME = "modular_addition"
TOKENS_PER_ROW = 3  # a, b, =


def _check(modulus: int, train_fraction: float) -> None:
  if modulus < 2:
    raise LmcError(f"--modulus must be >= 2, got {modulus}; a sum modulo 1 has one answer.")
  if not 0 < train_fraction < 1:
    raise LmcError(f"--train_fraction must be between 0 and 1 (exclusive), got "
                   f"{train_fraction}.")


def train_size(modulus: int, train_fraction: float) -> int:
  """Training rows of the p * p sums: the fraction rounded, kept within 1 .. p*p - 1."""
  _check(modulus, train_fraction)
  total = modulus * modulus
  return min(max(int(round(train_fraction * total)), 1), total - 1)


def modular_addition(modulus: int = 97, train_fraction: float = 0.3, seed: int = 0) -> Dataset:
  """All sums mod `modulus`, split into train and test by `seed` (see the module)."""
  n_train = train_size(modulus, train_fraction)
  a, b = np.divmod(np.arange(modulus * modulus), modulus)
  order = np.random.default_rng([seed, 4]).permutation(modulus * modulus)
  x = np.stack([a, b, np.full_like(a, modulus)], 1)[order].astype(np.float32)
  y = ((a + b) % modulus)[order].astype(np.int32)
  return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=modulus,
                 source=f"a + b mod {modulus}")
