"""Installed MNIST files are checked at every load against the MD5s `experiments.fetch`
recorded in SOURCE.json: a byte changed after the install (the structure still valid) is
refused naming the file and the fetch, and the fetch then puts a verified copy back."""
import gzip
import hashlib

import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.data import mnist
from lmc_jax.data.datasets import load_dataset
from lmc_jax.data.idx import idx_bytes
from lmc_jax.errors import LmcError


@pytest.fixture
def installed(tmp_path, monkeypatch):
  """Tiny MNIST-shaped files made "official" and installed by the fetch."""
  rng = np.random.default_rng(0)
  files = {"train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (5, 28, 28), np.uint8)),
           "train-labels-idx1-ubyte": idx_bytes(np.arange(5, dtype=np.uint8)),
           "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (3, 28, 28), np.uint8)),
           "t10k-labels-idx1-ubyte": idx_bytes(np.arange(3, dtype=np.uint8))}
  monkeypatch.setattr(mnist, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
  monkeypatch.setattr(mnist, "from_mirror", lambda base, **k: mnist._verified(dict(files)))
  assert mnist.fetch_mnist(tmp_path, mirrors=("fake://",), use_wheel=False) == "fake://"
  return tmp_path, files


def _flip(path, offset):
  data = bytearray(path.read_bytes())
  data[offset] ^= 1
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("name,offset", [("train-images-idx3-ubyte", 500),
                                         ("t10k-labels-idx1-ubyte", -1)])
def test_a_byte_changed_after_install_is_refused_and_the_fetch_repairs_it(installed, name,
                                                                          offset):
  data_dir, files = installed
  config = default_config("mnist")
  good = load_dataset(config, data_dir)
  _flip(data_dir / "mnist" / name, offset)  # still a valid IDX file of the right shape
  with pytest.raises(LmcError) as e:
    load_dataset(config, data_dir)
  message = str(e.value)
  assert f"{data_dir / 'mnist' / name} has MD5 " in message
  assert "recorded when it was installed" in message
  assert f"experiments.fetch --dataset=mnist --data_dir={data_dir}" in message
  mnist.fetch_mnist(data_dir, mirrors=("fake://",), use_wheel=False)  # run the fetch again
  assert (data_dir / "mnist" / name).read_bytes() == files[name]
  np.testing.assert_array_equal(load_dataset(config, data_dir).x_train, good.x_train)


def test_gzipped_installed_files_are_checked_uncompressed(installed):
  data_dir, files = installed
  name = "train-labels-idx1-ubyte"
  (data_dir / "mnist" / name).unlink()
  (data_dir / "mnist" / f"{name}.gz").write_bytes(gzip.compress(files[name]))
  load_dataset(default_config("mnist"), data_dir)  # the same bytes, compressed: accepted
  damaged = bytearray(files[name])
  damaged[-1] ^= 1
  (data_dir / "mnist" / f"{name}.gz").write_bytes(gzip.compress(bytes(damaged)))
  with pytest.raises(LmcError, match="recorded when it was installed"):
    load_dataset(default_config("mnist"), data_dir)
