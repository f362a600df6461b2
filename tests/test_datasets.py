import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.data.datasets import moons
from lmc_jax.errors import LmcError


def test_moons_shapes_balance_and_geometry():
  d = moons(512, 512, 0.0, seed=3)
  assert d.x_train.shape == (512, 2) and d.x_train.dtype == np.float32
  assert d.y_train.shape == (512,) and d.y_train.dtype == np.int32
  assert np.bincount(d.y_train).tolist() == [256, 256]
  # Noise-free points lie exactly on the two unit half circles.
  x, y = d.x_train.astype(np.float64), d.y_train
  np.testing.assert_allclose(np.hypot(x[y == 0, 0], x[y == 0, 1]), 1, atol=1e-6)
  np.testing.assert_allclose(np.hypot(x[y == 1, 0] - 1, x[y == 1, 1] - 0.5), 1, atol=1e-6)
  assert (x[y == 0, 1] >= -1e-6).all() and (x[y == 1, 1] <= 0.5 + 1e-6).all()


def test_moons_same_seed_same_arrays_other_seed_other_arrays():
  a, b, c = moons(seed=0), moons(seed=0), moons(seed=1)
  for u, v in zip(a[:4], b[:4]):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(a.x_train, c.x_train)
  assert not np.array_equal(a.x_train, a.x_test)  # test set is a fresh draw


def test_moons_arrays_are_pinned():
  # numpy's PCG64 stream is fixed, so these values hold on every machine.
  d = moons(seed=0)
  assert float(d.x_train.astype(np.float64).sum()) == pytest.approx(382.23593, abs=1e-4)
  assert d.y_train[:8].tolist() == [0, 1, 0, 1, 1, 0, 0, 0]
  np.testing.assert_allclose(d.x_test[0], [1.3857841, -0.2157424], atol=1e-6)


def test_noise_is_gaussian_with_the_given_scale():
  clean = moons(4000, 2, 0.0, seed=5).x_train
  noisy = moons(4000, 2, 0.1, seed=5).x_train
  assert np.std(noisy - clean) == pytest.approx(0.1, rel=0.05)


def test_bad_dataset_inputs():
  with pytest.raises(LmcError, match="data.dataset must be one of moons, mnist, cifar10"):
    default_config("imagenet")
  with pytest.raises(LmcError, match="data.n_train must be >= 2"):
    default_config("moons", n_train=1)
  with pytest.raises(LmcError, match="at least 2"):  # the generator checks its own arguments
    moons(n_train=1)
