"""A user's own dataset from one .npz file (`npz:PATH`) and dataset facts without loading
(`dataset_info`): round trips against rows written out by hand, every refusal by name with
nothing written, and headers-only reading shown on a file whose inputs stop after their
headers."""
import hashlib
import io
import pickle
import re
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.data import cifar10, npz
from lmc_jax.data.datasets import (
  Dataset,
  dataset_info,
  dataset_slug,
  dims_of,
  is_npz,
  load_dataset,
  npz_path,
  subset,
)
from lmc_jax.data.idx import idx_bytes
from lmc_jax.data.npz import load_npz
from lmc_jax.errors import LmcError
from tests.helpers.cli import snapshot


def _arrays(rng, x_shape=(5, 3), n_test=4, dtype=np.float64, classes=3):
  """Four valid arrays: x (n, *x_shape[1:]) of `dtype`, labels with every class in train."""
  n = x_shape[0]
  if dtype == np.uint8:
    x_tr = rng.integers(0, 256, x_shape).astype(np.uint8)
    x_te = rng.integers(0, 256, (n_test, *x_shape[1:])).astype(np.uint8)
  else:
    x_tr = rng.normal(size=x_shape).astype(dtype)
    x_te = rng.normal(size=(n_test, *x_shape[1:])).astype(dtype)
  return dict(x_train=x_tr, y_train=np.arange(n) % classes, x_test=x_te,
              y_test=np.arange(n_test) % classes)


def _save(path, compressed=False, **arrays):
  (np.savez_compressed if compressed else np.savez)(path, **arrays)
  return path


def _config(name, train_subset=0, test_subset=0, seed=0):
  return SimpleNamespace(dataset=name, data_seed=seed, train_subset=train_subset,
                         test_subset=test_subset, n_train=7, n_test=7, noise=0.1)


def _hand_rows(x):
  """float32 rows in HWC order built one value at a time; uint8 divided by 255 in float32."""
  rows = []
  for sample in x:
    idx = np.ndindex(*sample.shape)  # last axis fastest: H, then W, then C
    row = [np.float32(sample[i]) / np.float32(255) if x.dtype == np.uint8
           else np.float32(sample[i]) for i in idx]
    rows.append(row)
  return np.asarray(rows, np.float32)


# ---------------------------------------------------------------- round trips
def test_flat_rows_round_trip(tmp_path, rng):
  a = _arrays(rng)
  path = _save(tmp_path / "flat.npz", **a, other=np.zeros(3))  # extra arrays are ignored
  d = load_npz(path)
  assert d.x_train.dtype == np.float32 and d.x_train.shape == (5, 3)
  np.testing.assert_array_equal(d.x_train, _hand_rows(a["x_train"]))
  np.testing.assert_array_equal(d.x_test, _hand_rows(a["x_test"]))
  assert d.y_train.dtype == np.int32 and d.y_train.tolist() == a["y_train"].tolist()
  assert d.y_test.dtype == np.int32 and d.y_test.tolist() == a["y_test"].tolist()
  assert d.image_shape is None and d.num_classes == 3 and d.d_out == 3
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  assert d.source == f"flat.npz (sha256 {digest[:12]})"


@pytest.mark.parametrize("x_shape, image_shape", [((4, 3, 5, 2), (3, 5, 2)),
                                                  ((4, 3, 5), (3, 5, 1))])
@pytest.mark.parametrize("compressed", [False, True])
def test_images_flatten_in_hwc_order_and_uint8_is_scaled(tmp_path, rng, x_shape, image_shape,
                                                         compressed):
  a = _arrays(rng, x_shape, dtype=np.uint8)
  d = load_npz(_save(tmp_path / "img.npz", compressed, **a))
  assert d.image_shape == image_shape and d.x_train.shape == (4, np.prod(image_shape))
  np.testing.assert_array_equal(d.x_train, _hand_rows(a["x_train"]))
  np.testing.assert_array_equal(d.x_test, _hand_rows(a["x_test"]))
  assert 0 <= d.x_train.min() and d.x_train.max() <= 1
  # Value (h=1, w=2, c=1) of image 0 sits at (1 * W + 2) * C + 1, as in CIFAR-10's rows.
  if len(x_shape) == 4:
    assert d.x_train[0, (1 * 5 + 2) * 2 + 1] == np.float32(a["x_train"][0, 1, 2, 1]) / 255


def test_fortran_ordered_images_flatten_by_index_not_memory(tmp_path, rng):
  a = _arrays(rng, (3, 2, 4, 3), dtype=np.uint8)
  fortran = dict(a, x_train=np.asfortranarray(a["x_train"]))
  d = load_npz(_save(tmp_path / "f.npz", **fortran))
  np.testing.assert_array_equal(d.x_train, _hand_rows(a["x_train"]))


def test_other_numeric_types_are_taken_as_they_are(tmp_path):
  x = np.array([[300, -2], [7, 0]], np.int16)
  d = load_npz(_save(tmp_path / "i.npz", x_train=x, y_train=np.array([0, 1], np.uint8),
                     x_test=x.astype(np.float16), y_test=np.array([1, 0], np.int64)))
  assert d.x_train.tolist() == [[300.0, -2.0], [7.0, 0.0]]
  assert d.x_test.dtype == np.float32 and d.x_test.tolist() == [[300.0, -2.0], [7.0, 0.0]]


def test_number_of_classes_inferred_over_both_splits_or_stored(tmp_path, rng):
  a = _arrays(rng)
  gaps = dict(a, y_train=np.array([0, 2, 0, 2, 0]), y_test=np.array([0, 5, 0, 2]))
  assert load_npz(_save(tmp_path / "gaps.npz", **gaps)).num_classes == 6  # 5 only in test
  binary = dict(a, y_train=np.array([0, 1, 0, 1, 1]), y_test=np.array([1, 1, 1, 1]))
  d = load_npz(_save(tmp_path / "binary.npz", **binary))
  assert d.num_classes == 2 and d.d_out == 1
  stored = load_npz(_save(tmp_path / "stored.npz", **a, num_classes=np.int64(10)))
  assert stored.num_classes == 10 and stored.d_out == 10
  single_in_train = dict(a, y_train=np.zeros(5, np.int64), y_test=np.array([0, 0, 1, 0]))
  assert load_npz(_save(tmp_path / "s.npz", **single_in_train)).num_classes == 2


def test_dataset_keeps_its_positional_fields(rng):
  x, y = np.zeros((2, 3), np.float32), np.array([0, 1], np.int32)
  d = Dataset(x, y, x, y, 10, source="mine")
  assert d.num_classes == 10 and d.source == "mine" and d.image_shape is None
  assert Dataset._fields[-1] == "image_shape"


# ---------------------------------------------------------------- refusals
def _drop(name):
  return lambda a: {k: v for k, v in a.items() if k != name}


def _set(**changes):
  return lambda a: {**a, **changes}


def _nan_at(a):
  x = a["x_test"].copy()
  x[1, 2] = np.nan
  return {**a, "x_test": x}


# (id, change to the valid arrays, regex of the key words; also refused by dataset_info)
REFUSALS = [
    ("array missing", _drop("y_test"),
     r"no array y_test \(it holds x_test, x_train, y_train\)", True),
    ("object dtype", _set(x_train=np.array([{}] * 5, dtype=object)),
     r"x_train .* dtype object, not a number type", True),
    ("string labels", _set(y_train=np.array(list("abcab"))), r"y_train .* not a number type", True),
    ("complex inputs", _set(x_test=np.ones((4, 3), np.complex64)),
     r"x_test .* complex64, not a number type", True),
    ("bool inputs", _set(x_train=np.ones((5, 3), bool)), r"x_train .* dtype bool", True),
    ("1-d inputs", _set(x_train=np.ones(5)), r"x_train .* shape \(5,\), not \(n, d\)", True),
    ("5-d inputs", _set(x_train=np.ones((5, 1, 1, 1, 3))), r"x_train .* not \(n, d\)", True),
    ("no samples", _set(x_train=np.ones((0, 3)), y_train=np.zeros(0, np.int64)),
     r"x_train .* holds no samples", True),
    ("no features", _set(x_test=np.ones((4, 0))), r"x_test .* hold no values", True),
    ("other per-sample shape", _set(x_test=np.ones((4, 1, 3))),
     r"x_train and x_test .* \(3,\) and \(1, 3\); save both splits with the same", True),
    ("float labels", _set(y_train=np.zeros(5)), r"y_train .* float64, not an integer", True),
    ("2-d labels", _set(y_test=np.zeros((4, 1), np.int64)), r"y_test .* shape \(4, 1\)", True),
    ("labels not one per input", _set(y_train=np.zeros(4, np.int64)),
     r"y_train .* 4 labels but x_train holds 5 samples", True),
    ("negative label", _set(y_test=np.array([0, 1, -1, 2])), r"y_test .* negative label -1", True),
    ("a single class", _set(y_train=np.zeros(5, np.int64), y_test=np.zeros(4, np.int64)),
     r"y_train and y_test .* only the label 0, one class", True),
    ("num_classes not scalar", _set(num_classes=np.array([3])),
     r"num_classes .* shape \(1,\) .* not one integer", True),
    ("num_classes float", _set(num_classes=np.float64(3)),
     r"num_classes .* float64, not one integer", True),
    ("num_classes 1", _set(y_train=np.zeros(5, np.int64), y_test=np.zeros(4, np.int64),
                           num_classes=np.int64(1)),
     r"num_classes .* is 1, but it must be at least 2", True),
    ("num_classes not above every label", _set(num_classes=np.int64(2)),
     r"num_classes .* is 2, .* above every label \(the largest is 2\)", True),
    ("non-finite input", _nan_at, r"x_test .* 1 values that are NaN or infinite", False),
    ("beyond float32", _set(x_train=np.full((5, 3), 1e300)),
     r"x_train .* 15 values .* beyond float32's range", False),
]


@pytest.mark.parametrize("change, words, by_info", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_every_bad_array_is_refused_by_name(tmp_path, rng, change, words, by_info):
  path = _save(tmp_path / "bad.npz", **change(_arrays(rng)))
  before = snapshot(tmp_path, folders=True)
  calls = [load_npz] + ([lambda p: dataset_info(_config(f"npz:{p}"))] if by_info else [])
  for call in calls:
    with pytest.raises(LmcError, match=words) as e:
      call(path)
    message = str(e.value)
    assert str(path) in message and message.endswith(".") and "\n" not in message
  assert snapshot(tmp_path, folders=True) == before


def _npy_header(shape, descr="<f4") -> bytes:
  f = io.BytesIO()
  np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False,
                                           "shape": shape})
  return f.getvalue()


def _headers_only_file(path, rng, x_shape=(1000, 8, 8, 3), n_test=200):
  """An .npz whose x members stop right after their headers: only the labels are whole."""
  members = {
      "x_train.npy": _npy_header(x_shape),
      "x_test.npy": _npy_header((n_test, *x_shape[1:])),
  }
  for name, n in (("y_train", x_shape[0]), ("y_test", n_test)):
    f = io.BytesIO()
    np.save(f, rng.integers(0, 4, n))
    members[f"{name}.npy"] = f.getvalue()
  with zipfile.ZipFile(path, "w") as z:
    for name, data in members.items():
      z.writestr(name, data)
  return path


@pytest.mark.parametrize("make, words", [
    (lambda p: p, r"npz dataset \S*nowhere.npz does not exist; give the path of a \.npz"),
    (lambda p: p.mkdir() or p, r"is a folder, not a file"),
    (lambda p: p.write_bytes(b"not a zip at all") and p, r"not a readable \.npz \(zip\) file"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
     r"not a readable \.npz \(zip\) file"),
])
def test_a_missing_or_unreadable_file_is_refused(tmp_path, make, words):
  path = tmp_path / "nowhere.npz"
  make(path)
  before = snapshot(tmp_path, folders=True)
  for call in (load_npz, lambda p: dataset_info(_config(f"npz:{p}"))):
    with pytest.raises(LmcError, match=words):
      call(path)
  assert snapshot(tmp_path, folders=True) == before


def test_a_damaged_member_is_refused_by_name(tmp_path, rng):
  path = _headers_only_file(tmp_path / "cut.npz", rng)
  with pytest.raises(LmcError, match=r"Array x_train in npz dataset \S*cut.npz cannot be read"):
    load_npz(path)
  damaged = tmp_path / "crc.npz"
  a = _arrays(rng)
  _save(damaged, **a)
  raw = bytearray(damaged.read_bytes())
  values = raw.index(a["y_test"].astype("<i8").tobytes(), raw.index(b"y_test.npy"))
  raw[values] ^= 0xFF  # a label flipped inside the stored member: its CRC no longer matches
  damaged.write_bytes(bytes(raw))
  with pytest.raises(LmcError, match=r"y_test in npz dataset \S*crc.npz cannot be read"):
    load_npz(damaged)


# ---------------------------------------------------------------- dataset_info
def _facts(data: Dataset):
  return (data.x_train.shape[1], data.num_classes, data.image_shape, len(data.y_train),
          len(data.y_test))


@pytest.mark.parametrize("x_shape", [(9, 6), (9, 2, 3), (9, 2, 3, 2)], ids=["flat", "3d", "4d"])
@pytest.mark.parametrize("subsets", [(0, 0), (3, 2), (50, 0)])
def test_info_of_npz_equals_what_loading_gives(tmp_path, rng, x_shape, subsets):
  path = _save(tmp_path / "d.npz", **_arrays(rng, x_shape, n_test=5, dtype=np.uint8))
  config = _config(f"npz:{path}", *subsets)
  info = dataset_info(config)
  assert info[:5] == _facts(load_dataset(config)) and info.name == f"npz:{path}"
  assert info.d_out == load_dataset(config).d_out


def test_info_of_moons_equals_what_loading_gives():
  for overrides in ({}, {"train_subset": 100, "test_subset": 7}, {"n_train": 30}):
    config = default_config("moons", **overrides)
    info = dataset_info(config)
    assert info[:5] == _facts(load_dataset(config)) and info.name == "moons"
  with pytest.raises(LmcError, match="at least 2"):  # a config built without its checks
    dataset_info(default_config("moons").replace(n_train=1))


def _tiny_mnist(data_dir, rng):
  (data_dir / "mnist").mkdir(parents=True)
  files = {
      "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, 28, 28), np.uint8)),
      "train-labels-idx1-ubyte": idx_bytes(np.arange(4, dtype=np.uint8)),
      "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (3, 28, 28), np.uint8)),
      "t10k-labels-idx1-ubyte": idx_bytes(np.arange(3, dtype=np.uint8)),
  }
  for name, data in files.items():
    (data_dir / "mnist" / name).write_bytes(data)


def _tiny_cifar10(data_dir, rng):
  src = data_dir / "src"
  src.mkdir(parents=True)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8), b"labels": [0, 1, 2]}
    (src / name).write_bytes(pickle.dumps(batch, protocol=2))
  cifar10.install_cifar10(src, data_dir)


@pytest.mark.parametrize("name, make, full", [
    ("mnist", _tiny_mnist, (784, 10, (28, 28, 1), 60000, 10000)),
    ("cifar10", _tiny_cifar10, (3072, 10, (32, 32, 3), 50000, 10000)),
])
def test_info_of_the_built_in_image_datasets(tmp_path, rng, name, make, full):
  make(tmp_path, rng)
  assert tuple(dataset_info(default_config(name), tmp_path))[:5] == full  # official sizes
  # Cut below the tiny copies' sizes, loading and dataset_info must agree on everything.
  config = default_config(name, train_subset=2, test_subset=1)
  assert dataset_info(config, tmp_path)[:5] == _facts(load_dataset(config, tmp_path))


def test_info_reads_no_input_array(tmp_path, rng, monkeypatch):
  # The x members stop after their headers: reading their values would fail.
  path = _headers_only_file(tmp_path / "huge.npz", rng)
  info = dataset_info(_config(f"npz:{path}", train_subset=10))
  assert info == (192, 4, (8, 8, 3), 10, 200, f"npz:{path}", None)  # no token vocabulary
  # And on a whole file, only the labels and num_classes are read.
  whole = _save(tmp_path / "whole.npz", **_arrays(rng), num_classes=np.int64(4))
  read = []
  real = npz._read_array
  monkeypatch.setattr(npz, "_read_array", lambda z, m, name, p: read.append(name) or
                      real(z, m, name, p))
  assert dataset_info(_config(f"npz:{whole}")).num_classes == 4
  assert sorted(read) == ["num_classes", "y_test", "y_train"]


def test_data_section_of_a_config_is_used():
  flat = default_config("moons", n_train=20, train_subset=5)
  sectioned = SimpleNamespace(data=SimpleNamespace(
      dataset="moons", data_seed=0, n_train=20, n_test=512, noise=0.1, train_subset=5,
      test_subset=0), hidden=(8,))
  assert dataset_info(sectioned) == dataset_info(flat)
  for u, v in zip(load_dataset(sectioned)[:4], load_dataset(flat)[:4]):
    np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- names
def test_names_slugs_and_dims(tmp_path):
  assert is_npz("npz:a.npz") and not is_npz("moons") and not is_npz(None)
  assert npz_path("npz:~/d/x.npz") == npz_path("npz:~/d/x.npz").expanduser()
  assert "~" not in str(npz_path("npz:~/d/x.npz"))
  with pytest.raises(LmcError, match=r"'npz:' names no file"):
    npz_path("npz:")
  for name in ("moons", "mnist", "cifar10"):
    assert dataset_slug(name) == name
  assert dataset_slug("npz:~/data/My Set.v2.npz") == "npz_My_Set_v2"
  assert dataset_slug("npz:/abs/a-b_C9.npz") == "npz_a-b_C9"
  assert re.fullmatch(r"npz_[A-Za-z0-9_-]+", dataset_slug("npz:ünï çødé.npz"))
  with pytest.raises(LmcError, match="Unknown dataset 'svhn'"):
    dataset_slug("svhn")
  assert dims_of("moons") == (2, 1) and dims_of("mnist") == (784, 10)
  assert dims_of("cifar10") == (3072, 10)
  with pytest.raises(LmcError, match=r"npz:x.npz.* use dataset_info|dataset_info\(config\)"):
    dims_of("npz:x.npz")
  with pytest.raises(LmcError, match="Unknown dataset"):
    dims_of("svhn")


# ---------------------------------------------------------------- load_dataset
def test_load_dataset_takes_npz_names_relative_absolute_and_home(tmp_path, rng, monkeypatch):
  path = _save(tmp_path / "mine.npz", **_arrays(rng, (9, 4), n_test=5))
  config = _config(f"npz:{path}", train_subset=3, seed=4)
  d = load_dataset(config, data_dir=tmp_path / "unused")
  whole = load_npz(path)
  expected = subset(whole, 3, 0, 4)
  assert len(d.y_train) == 3 and len(d.y_test) == 5
  for u, v in zip(d, expected):
    np.testing.assert_array_equal(u, v)
  # The 3 rows are rows of the file, in its order.
  rows = [int(np.flatnonzero((whole.x_train == r).all(1))[0]) for r in d.x_train]
  assert rows == sorted(rows) and len(set(rows)) == 3
  monkeypatch.chdir(tmp_path)
  np.testing.assert_array_equal(load_dataset(_config("npz:mine.npz")).x_train, whole.x_train)
  monkeypatch.setenv("HOME", str(tmp_path))
  np.testing.assert_array_equal(load_dataset(_config("npz:~/mine.npz")).x_test, whole.x_test)


def test_load_dataset_still_builds_moons_from_a_real_config():
  d = load_dataset(default_config("moons"))
  assert d.x_train.shape == (512, 2) and d.num_classes == 2 and d.image_shape is None
  assert d.source == "Moons"
