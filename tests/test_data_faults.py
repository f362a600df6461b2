"""Faults in dataset files, archives and installs (issue 12): every bad array is refused
by name at load, an archive never writes outside its folder, and a bad source never
replaces a good install (nor does a killed fetch leave folders behind)."""
import hashlib
import io
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lmc_jax.data.mnist as mnist
from lmc_jax.config import default_config
from lmc_jax.data import archives, cifar10
from lmc_jax.data.datasets import load_dataset
from lmc_jax.data.idx import idx_bytes
from lmc_jax.errors import LmcError
from tests.helpers.cli import refused, run_cli, snapshot

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(params=[pytest.param(True, id="data_filter"),
                        pytest.param(False, id="manual_checks")])
def extraction_path(request, monkeypatch):
  """Each archive test runs twice: through tarfile's data filter and through the manual
  checks that stand in for it on a Python without one."""
  if request.param and not hasattr(tarfile, "data_filter"):
    pytest.skip("this Python's tarfile has no extraction filters")
  monkeypatch.setattr(archives, "HAS_DATA_FILTER", request.param)
  return request.param


# ---------------------------------------------------------------- MNIST files
def _mnist_files(rng, n_train=3, n_test=2):
  return {
      "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28), np.uint8)),
      "train-labels-idx1-ubyte": idx_bytes(np.arange(n_train, dtype=np.uint8) % 10),
      "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28), np.uint8)),
      "t10k-labels-idx1-ubyte": idx_bytes(np.arange(n_test, dtype=np.uint8) % 10),
  }


def _write_mnist(data_dir: Path, files: dict):
  (data_dir / "mnist").mkdir(parents=True, exist_ok=True)
  for name, data in files.items():
    (data_dir / "mnist" / name).write_bytes(data)


def test_tiny_intact_mnist_loads_through_load_dataset(tmp_path, rng):
  _write_mnist(tmp_path, _mnist_files(rng))
  data = load_dataset(default_config("mnist"), tmp_path)
  assert data.x_train.shape == (3, 784) and data.x_test.shape == (2, 784)
  assert data.y_train.tolist() == [0, 1, 2]


@pytest.mark.parametrize("name, data, words", [
    ("train-labels-idx1-ubyte", idx_bytes(np.array([1, 12, 3], np.uint8)),
     r"MNIST train labels \S*train-labels-idx1-ubyte hold the label 12 \(1 of 3 labels are "
     r"outside 0..9\)"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((3, 27, 28), np.uint8)),
     r"MNIST train images \S*train-images-idx3-ubyte have shape \(3, 27, 28\), not "
     r"\(n, 28, 28\)"),
    ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((2, 28, 28), np.int8)),
     r"MNIST test images \S*t10k-images-idx3-ubyte have dtype int8, not uint8"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(3, np.uint8)),
     r"MNIST test images \S*t10k-images-idx3-ubyte hold 2 images but MNIST test labels "
     r"\S*t10k-labels-idx1-ubyte hold 3 labels"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros((2, 1), np.uint8)),
     r"t10k-labels-idx1-ubyte have shape \(2, 1\), not \(n,\)"),
    ("t10k-labels-idx1-ubyte", bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(8),
     r"t10k-labels-idx1-ubyte have dtype float32, not an integer type"),
])
def test_damaged_mnist_file_is_named_with_the_fix(tmp_path, rng, name, data, words):
  _write_mnist(tmp_path, _mnist_files(rng))
  (tmp_path / "mnist" / name).write_bytes(data)
  with pytest.raises(LmcError, match=words + rf".*experiments\.fetch --dataset=mnist "
                     rf"--data_dir={tmp_path}` to fetch verified copies\.$"):
    load_dataset(default_config("mnist"), tmp_path)


def test_empty_mnist_split_is_refused(tmp_path, rng):
  _write_mnist(tmp_path, _mnist_files(rng, n_test=0))
  with pytest.raises(LmcError, match="MNIST test images .* hold no images"):
    mnist.load_mnist_raw(tmp_path)


def test_zoo_cli_refuses_damaged_mnist_in_one_line_and_writes_nothing(tmp_path, rng):
  files = _mnist_files(rng)
  files["train-labels-idx1-ubyte"] = idx_bytes(np.array([1, 12, 3], np.uint8))
  _write_mnist(tmp_path / "data", files)
  out = tmp_path / "runs"
  r = run_cli("zoo", "--dataset=mnist", f"--data_dir={tmp_path / 'data'}", "--width=2",
           "--num_models=1", "--epochs=1", f"--out={out}")
  refused(r, "train-labels-idx1-ubyte hold the label 12", "experiments.fetch")
  assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def _fake_official(monkeypatch, files: dict):
  """Makes `files` the "official" MNIST (their MD5s) and the only mirror serve them."""
  monkeypatch.setattr(mnist, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
  monkeypatch.setattr(mnist, "from_mirror", lambda base, **k: mnist._verified(dict(files)))


def test_mnist_fetch_swaps_in_verified_files_keeps_user_files_and_cleans_leftovers(
    tmp_path, rng, monkeypatch):
  old = _mnist_files(rng)
  old["train-labels-idx1-ubyte"] = b"damaged"
  _write_mnist(tmp_path, old)
  (tmp_path / "mnist" / "NOTES.txt").write_text("mine")
  stale = [tmp_path / ".mnist.new-killed", tmp_path / ".mnist.old-killed"]
  for p in stale:
    p.mkdir()
    (p / "half").write_bytes(b"x")
  new = _mnist_files(np.random.default_rng(1))
  _fake_official(monkeypatch, new)
  assert mnist.fetch_mnist(tmp_path, mirrors=("fake://",), use_wheel=False) == "fake://"
  for name, data in new.items():
    assert (tmp_path / "mnist" / name).read_bytes() == data
  assert (tmp_path / "mnist" / "NOTES.txt").read_text() == "mine"
  assert not any(p.exists() for p in stale)
  assert sorted(p.name for p in tmp_path.iterdir()) == [".mnist.lock", "mnist"]


def test_mnist_fetch_that_fails_its_checks_leaves_the_install_as_it_was(
    tmp_path, rng, monkeypatch):
  _write_mnist(tmp_path, _mnist_files(rng))
  (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"old, not official")
  before = snapshot(tmp_path / "mnist", folders=True)
  bad = _mnist_files(np.random.default_rng(1))
  bad["t10k-images-idx3-ubyte"] = idx_bytes(np.zeros((2, 27, 28), np.uint8))
  _fake_official(monkeypatch, bad)  # matching MD5s, yet not MNIST-shaped
  with pytest.raises(LmcError, match=r"have shape \(2, 27, 28\).*fetch from another source"):
    mnist.fetch_mnist(tmp_path, mirrors=("fake://",), use_wheel=False)
  assert snapshot(tmp_path / "mnist", folders=True) == before
  assert not list(tmp_path.glob(".mnist-*"))


# ---------------------------------------------------------------- CIFAR-10 sources
def _image_folder(root: Path, rng, n=1):
  for split in ("train", "test"):
    for cls in cifar10.CLASSES:
      (root / split / cls).mkdir(parents=True)
      for k in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
            root / split / cls / f"{k:04d}.png")


def _batches(folder: Path, rng, per_batch=2, **override):
  folder.mkdir(parents=True)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"data": rng.integers(0, 256, (per_batch, 3072), np.uint8),
             b"labels": list(range(per_batch))}
    batch.update(override.get(name, {}))
    (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def _tgz(path: Path, folder: Path) -> Path:
  with tarfile.open(path, "w:gz") as tar:
    for child in sorted(folder.iterdir()):
      tar.add(child, arcname=child.name)
  return path


@pytest.mark.parametrize("override, words", [
    ({"data_batch_2": {b"labels": [0, 12]}},
     r"CIFAR-10 batch \S*src/cifar-10-batches-py/data_batch_2 labels hold the label 12"),
    ({"test_batch": {b"data": np.zeros((2, 3072), np.float32)}},
     r"test_batch holds pixels of dtype float32, not uint8"),
    ({"data_batch_1": {b"data": np.zeros((2, 3000), np.uint8)}},
     r"data_batch_1 holds data of shape \(2, 3000\), not \(n, 3072\)"),
    ({"data_batch_4": {b"labels": [0, 1, 2]}},
     r"data_batch_4 images hold 2 images but .*data_batch_4 labels hold 3 labels"),
    ({"data_batch_5": {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}},
     r"data_batch_5 images hold no images"),
    ({"test_batch": {b"labels": ["cat", "dog"]}}, r"test_batch labels have dtype <U3"),
])
def test_bad_cifar_batches_are_refused_by_file_before_installing(tmp_path, rng, override,
                                                                  words):
  _batches(tmp_path / "src" / "cifar-10-batches-py", rng, **override)
  with pytest.raises(LmcError, match=words + ".*pass another --source"):
    cifar10.install_cifar10(tmp_path / "src", tmp_path / "d")
  assert not (tmp_path / "d" / "cifar10").exists()


def test_empty_class_folder_is_refused(tmp_path, rng):
  _image_folder(tmp_path / "imgs", rng)
  (tmp_path / "imgs" / "test" / "frog" / "0000.png").unlink()
  with pytest.raises(LmcError, match=r"Image folder \S*imgs/test/frog holds no "
                     r"\.jpg/\.jpeg/\.png images"):
    cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")


def test_install_decodes_and_caches_so_the_first_load_reads_the_cache(tmp_path, rng,
                                                                       monkeypatch):
  _image_folder(tmp_path / "imgs", rng)
  cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")
  monkeypatch.setattr(cifar10, "load_raw_from", lambda *a: pytest.fail("decoded again"))
  x_tr, y_tr, x_te, y_te, _ = cifar10.load_cifar10_raw(tmp_path / "d")
  assert x_tr.shape == (10, 32, 32, 3) and y_te.tolist() == list(range(10))


def test_a_cache_with_bad_arrays_is_rebuilt_not_trusted(tmp_path, rng):
  _image_folder(tmp_path / "imgs", rng)
  cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")
  good = cifar10.load_cifar10_raw(tmp_path / "d")
  cache = tmp_path / "d" / "cifar10" / "cache"
  np.save(cache / "y_train.npy", np.full(10, 12))  # the fingerprint still matches
  again = cifar10.load_cifar10_raw(tmp_path / "d")
  np.testing.assert_array_equal(again[1], good[1])
  np.testing.assert_array_equal(np.load(cache / "y_train.npy"), good[1])


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", "holds a list, not an object"),
    ('{"kind": "imagenet", "label": "x"}', "its kind 'imagenet' is not one of"),
    ('{"kind": "tfds", "label": "x"}', "names no tfds_data_dir"),
    ("{", "is not valid JSON"),
])
def test_malformed_source_json_is_refused(tmp_path, text, words):
  (tmp_path / "cifar10").mkdir()
  (tmp_path / "cifar10" / "SOURCE.json").write_text(text)
  with pytest.raises(LmcError, match=words + ".*experiments.fetch --dataset=cifar10"):
    cifar10.load_cifar10_raw(tmp_path)


# ---------------------------------------------------------------- archive extraction
def _member(name, kind=tarfile.REGTYPE, data=b"abc", mode=0o644, linkname=""):
  info = tarfile.TarInfo(name)
  info.type, info.mode, info.linkname = kind, mode, linkname
  info.size = len(data) if kind == tarfile.REGTYPE else 0
  return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tar_of(path: Path, members) -> Path:
  with tarfile.open(path, "w:gz") as tar:
    for info, data in members:
      tar.addfile(info, data)
  return path


def _hostile(tmp_path):
  outside = tmp_path / "outside.txt"
  return [
      ("parent", [_member("ok/../../evil.txt")], "that would land outside the folder"),
      ("dotdot", [_member("../evil.txt")], "that would land outside the folder"),
      ("absolute", [_member(str(outside))], "with an absolute path"),
      ("symlink_out", [_member("train", tarfile.SYMTYPE, linkname="../../..")],
       "that points outside the folder it is unpacked into"),
      ("symlink_abs", [_member("evil", tarfile.SYMTYPE, linkname=str(outside))],
       "that points outside the folder it is unpacked into"),
      ("symlink_then_write", [_member("d", tarfile.SYMTYPE, linkname=str(tmp_path)),
                              _member("d/outside.txt")], "that points outside the folder"),
      ("hardlink_out", [_member("h", tarfile.LNKTYPE, linkname="../../outside.txt")],
       "that points outside the folder"),
      ("symlink_in", [_member("a"), _member("b", tarfile.SYMTYPE, linkname="a")],
       "a dataset archive holds only folders and files"),
      ("fifo", [_member("p", tarfile.FIFOTYPE)], "holds a fifo member 'p'"),
      ("chardev", [_member("zero", tarfile.CHRTYPE)], "holds a character device member"),
      ("blockdev", [_member("sda", tarfile.BLKTYPE)], "holds a block device member"),
  ]


def test_hostile_archives_are_refused_and_write_nothing_outside(tmp_path, extraction_path):
  work = tmp_path / "work"
  work.mkdir()
  for label, members, words in _hostile(work):
    archive = _tar_of(work / f"{label}.tgz", members)
    before = snapshot(tmp_path, folders=True)
    with pytest.raises(LmcError, match=f"^{archive} .*{words}") as e:
      cifar10.install_cifar10(archive, work / "data")
    assert "\n" not in str(e.value) and str(e.value).endswith("."), label
    after = snapshot(tmp_path, folders=True)
    # Only the lock file may be new: nothing extracted anywhere, no staging folder left.
    assert set(after) - set(before) <= {"work/data", "work/data/.cifar10.lock"}, label
    assert after.items() >= before.items(), label
  assert not (work / "outside.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_extracted_files_lose_setuid_sticky_and_group_other_write(tmp_path, extraction_path):
  archive = _tar_of(tmp_path / "modes.tgz", [
      _member("dir", tarfile.DIRTYPE, mode=0o3777),
      _member("dir/suid", mode=0o4755), _member("dir/sgid", mode=0o2775),
      _member("dir/shared", mode=0o666), _member("dir/locked", mode=0o000)])
  dest = tmp_path / "dest"
  dest.mkdir()
  archives.safe_extract(archive, dest)
  modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (dest / "dir").iterdir()}
  assert modes == {"suid": 0o755, "sgid": 0o755, "shared": 0o644, "locked": 0o600}
  dir_mode = stat.S_IMODE((dest / "dir").stat().st_mode)
  assert not dir_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022)
  assert (dest / "dir" / "suid").read_bytes() == b"abc"


def test_a_setuid_image_in_a_real_layout_installs_without_the_bit(tmp_path, rng):
  _image_folder(tmp_path / "imgs", rng)
  os.chmod(tmp_path / "imgs" / "train" / "cat" / "0000.png", 0o4775)
  cifar10.install_cifar10(_tgz(tmp_path / "s.tgz", tmp_path / "imgs"), tmp_path / "d")
  mode = (tmp_path / "d" / "cifar10" / "images" / "train" / "cat" / "0000.png").stat().st_mode
  assert stat.S_IMODE(mode) == 0o755


def test_unreadable_archives_say_what_they_are(tmp_path, rng):
  (tmp_path / "garbage.tgz").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
  with pytest.raises(LmcError, match="garbage.tgz is not a readable tar archive"):
    cifar10.install_cifar10(tmp_path / "garbage.tgz", tmp_path / "d")
  _image_folder(tmp_path / "imgs", rng)
  good = _tgz(tmp_path / "good.tgz", tmp_path / "imgs").read_bytes()
  mid = len(good) // 2  # a damaged deflate stream in the middle, and a truncated one
  (tmp_path / "flipped.tgz").write_bytes(good[:mid] + bytes(b ^ 0xFF for b in good[mid:mid + 64])
                                         + good[mid + 64:])
  (tmp_path / "cut.tgz").write_bytes(good[:mid])
  for name in ("flipped.tgz", "cut.tgz"):  # (tarfile alone passes a flipped stream)
    with pytest.raises(LmcError, match=f"{name} is not a readable tar archive"):
      cifar10.install_cifar10(tmp_path / name, tmp_path / "d")
  # An uncompressed tar: a damaged header mid-way, and one cut at a member's end (tarfile
  # itself reads both as a shorter archive).
  with tarfile.open(tmp_path / "plain.tar", "w") as tar:
    for split in ("train", "test"):
      tar.add(tmp_path / "imgs" / split, arcname=split)
  plain = (tmp_path / "plain.tar").read_bytes()
  members = tarfile.open(tmp_path / "plain.tar").getmembers()
  cut_at = members[len(members) // 2].offset
  (tmp_path / "badheader.tar").write_bytes(plain[:cut_at] + b"\x07" * 512
                                           + plain[cut_at + 512:])
  (tmp_path / "at_boundary.tar").write_bytes(plain[:cut_at])
  for name, words in (("badheader.tar", "a damaged header after its"),
                      ("at_boundary.tar", "it ends after .* without the end-of-archive blocks")):
    with pytest.raises(LmcError, match=f"{name} is not a readable tar archive \\({words}"):
      cifar10.install_cifar10(tmp_path / name, tmp_path / "d")
  with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
    z.writestr("train/cat/0000.png", b"x")
  with pytest.raises(LmcError, match="c.zip is a zip archive.*pass the folder as --source"):
    cifar10.install_cifar10(tmp_path / "c.zip", tmp_path / "d")
  assert not (tmp_path / "d" / "cifar10").exists()


# ---------------------------------------------------------------- replacing an install
def _bad_sources(tmp_path, rng) -> dict:
  """Sources that must each be refused on top of a good install."""
  _image_folder(tmp_path / "src_imgs", rng)
  good = _tgz(tmp_path / "good.tgz", tmp_path / "src_imgs").read_bytes()
  (tmp_path / "garbage.tgz").write_bytes(b"not a tar at all" * 100)
  (tmp_path / "truncated.tgz").write_bytes(good[: len(good) // 2])
  (tmp_path / "src_imgs" / "test" / "ship" / "0000.png").unlink()  # a class with no images
  _tgz(tmp_path / "counts.tgz", tmp_path / "src_imgs")
  _batches(tmp_path / "b" / "cifar-10-batches-py", rng,
           data_batch_3={b"labels": [0, 1, 2]})  # 2 images, 3 labels
  _tgz(tmp_path / "labels.tgz", tmp_path / "b")
  _tar_of(tmp_path / "escape.tgz", [_member("../evil.txt")])
  return {name: tmp_path / f"{name}.tgz"
          for name in ("garbage", "truncated", "counts", "labels", "escape")}


def test_a_bad_source_leaves_the_good_install_byte_for_byte(tmp_path, rng):
  _image_folder(tmp_path / "installed", rng)
  data = tmp_path / "data"
  cifar10.install_cifar10(tmp_path / "installed", data)
  cifar10.load_cifar10_raw(data)
  before = snapshot(data, folders=True)
  words = {"garbage": "not a readable tar archive", "truncated": "not a readable tar archive",
           "counts": "holds no .jpg/.jpeg/.png images", "labels": "hold 3 labels",
           "escape": "would land outside"}
  for name, source in _bad_sources(tmp_path / "bad", rng).items():
    with pytest.raises(LmcError, match=words[name]):
      cifar10.install_cifar10(source, data)
    assert snapshot(data, folders=True) == before, name
  assert cifar10.load_cifar10_raw(data)[4] == "CIFAR-10 (image folder)"


def test_fetch_cli_refuses_a_bad_source_in_one_line_keeping_the_install(tmp_path, rng):
  _image_folder(tmp_path / "installed", rng)
  data = tmp_path / "data"
  cifar10.install_cifar10(tmp_path / "installed", data)
  before = snapshot(data, folders=True)
  bad = _bad_sources(tmp_path / "bad", rng)["counts"]
  r = run_cli("fetch", "--dataset=cifar10", f"--source={bad}", f"--data_dir={data}")
  refused(r, "test/ship holds no", "the installed one is unchanged")
  assert snapshot(data, folders=True) == before


def test_leftovers_of_a_killed_fetch_are_removed_by_the_next(tmp_path, rng):
  data = tmp_path / "data"
  data.mkdir()
  stale = [data / ".cifar10.new-1", data / ".cifar10.new-killed",
           data / ".cifar10.old-killed"]
  for p in stale:
    (p / "images").mkdir(parents=True)
    (p / "images" / "half.png").write_bytes(b"x")
  _image_folder(tmp_path / "imgs", rng)
  cifar10.install_cifar10(tmp_path / "imgs", data)
  assert not any(p.exists() for p in stale)
  assert sorted(p.name for p in data.iterdir()) == [".cifar10.lock", "cifar10"]
  assert sorted(p.name for p in (data / "cifar10").iterdir()) == ["SHA256SUMS", "SOURCE.json",
                                                                  "cache", "images"]


def test_a_fetch_killed_between_its_renames_gets_the_old_install_back(tmp_path, rng):
  _image_folder(tmp_path / "imgs", rng)
  data = tmp_path / "data"
  cifar10.install_cifar10(tmp_path / "imgs", data)
  before = snapshot(data / "cifar10", folders=True)
  os.replace(data / "cifar10", data / ".cifar10.old-killed")  # as a kill mid-swap leaves it
  (data / ".cifar10.new-killed").mkdir()
  with pytest.raises(LmcError, match="not a readable tar archive"):
    cifar10.install_cifar10(_bad_sources(tmp_path / "bad", rng)["garbage"], data)
  assert snapshot(data / "cifar10", folders=True) == before
  assert sorted(p.name for p in data.iterdir()) == [".cifar10.lock", "cifar10"]


def test_a_pickle_may_build_empty_bytes_but_not_call_bytes_with_a_size():
  from lmc_jax.data.safe_pickle import load_arrays
  empty = load_arrays(pickle.dumps({"data": np.zeros((0, 3072), np.uint8)}, protocol=2))
  assert empty["data"].shape == (0, 3072)

  class Huge:
    def __reduce__(self):
      return (bytes, (10**12,))
  with pytest.raises(LmcError, match="huge.pkl calls bytes\\(\\) with arguments"):
    load_arrays(pickle.dumps(Huge(), protocol=2), "huge.pkl")
