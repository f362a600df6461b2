"""CIFAR-10 sources written by the tests themselves: pickled batches, their tarball, an
image folder, a TFDS stand-in; the cache; corrupt and hostile inputs."""
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
import types

import numpy as np
import pytest
from PIL import Image

from lmc_jax.config import default_config
from lmc_jax.data import cifar10
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError


def _batches(folder, rng, per_batch=4):
  folder.mkdir(parents=True)
  expected = {"train": [], "test": []}
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    x = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
    y = rng.integers(0, 10, per_batch).tolist()
    # Keys as bytes, as the Python 2 originals give them.
    (folder / name).write_bytes(pickle.dumps({b"data": x, b"labels": y, b"batch_label": b"x"},
                                             protocol=2))
    expected["test" if name == "test_batch" else "train"].append((x, y))
  return expected


def _image_folder(root, rng, n=2, fmt="PNG"):
  ext = ".png" if fmt == "PNG" else ".jpg"
  images = {}
  for split in ("train", "test"):
    for label, cls in enumerate(cifar10.CLASSES):
      d = root / split / cls
      d.mkdir(parents=True)
      for k in range(n):
        a = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
        Image.fromarray(a).save(d / f"{k:04d}{ext}", format=fmt)
        images[(split, label, k)] = a
  return images


def test_batches_folder_and_tarball(tmp_path, rng):
  exp = _batches(tmp_path / "src" / "cifar-10-batches-py", rng)
  for source, data_dir in ((tmp_path / "src" / "cifar-10-batches-py", tmp_path / "d1"),):
    info = cifar10.install_cifar10(source, data_dir)
    assert info["kind"] == "cifar-10-python" and info["label"] == "CIFAR-10"
  tgz = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(tgz, "w:gz") as tar:
    tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
  info = cifar10.install_cifar10(tgz, tmp_path / "d2")
  assert "sha256" in info
  for d in ("d1", "d2"):
    x_tr, y_tr, x_te, y_te, label = cifar10.load_cifar10_raw(tmp_path / d)
    assert x_tr.shape == (20, 32, 32, 3) and x_te.shape == (4, 32, 32, 3)
    # Channel-major rows become HWC images: pixel (0, 0) of channel c is data[c * 1024].
    first = exp["train"][0][0][0]
    np.testing.assert_array_equal(x_tr[0, 0, 0], first[[0, 1024, 2048]])
    np.testing.assert_array_equal(y_tr[:4], exp["train"][0][1])
    np.testing.assert_array_equal(y_te, exp["test"][0][1])


def test_image_folder_png_and_dataset_normalisation(tmp_path, rng):
  images = _image_folder(tmp_path / "imgs", rng)
  info = cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")
  assert info["kind"] == "image-folder" and info["label"] == "CIFAR-10 (image folder)"
  x_tr, y_tr, x_te, y_te, _ = cifar10.load_cifar10_raw(tmp_path / "d")
  assert x_tr.shape == (20, 32, 32, 3) and y_tr.tolist() == sorted(list(range(10)) * 2)
  np.testing.assert_array_equal(x_tr[2], images[("train", 1, 0)])  # PNG is lossless
  data = load_dataset(default_config("cifar10"), tmp_path / "d")
  assert data.x_train.shape == (20, 3072) and data.source == "CIFAR-10 (image folder)"
  want = (images[("train", 0, 0)][0, 0] / 255.0 - cifar10.MEAN) / cifar10.STD
  np.testing.assert_allclose(data.x_train[0, :3], want, rtol=1e-5)


def test_jpeg_tgz_is_labelled_as_a_reencode(tmp_path, rng):
  _image_folder(tmp_path / "jpg", rng, n=1, fmt="JPEG")
  tgz = tmp_path / "re.tgz"
  with tarfile.open(tgz, "w:gz") as tar:
    for split in ("train", "test"):
      tar.add(tmp_path / "jpg" / split, arcname=split)
  info = cifar10.install_cifar10(tgz, tmp_path / "d")
  assert info["label"] == "CIFAR-10 (JPEG re-encode)"


def _forget_checksums(root):
  """Makes `root` an install from before checksums were recorded."""
  info = json.loads((root / "SOURCE.json").read_text())
  del info["checksums"], info["checksums_sha256"]
  (root / "SOURCE.json").write_text(json.dumps(info))
  (root / cifar10.CHECKSUMS).unlink()


def test_cache_is_used_then_rebuilt_when_the_source_changes(tmp_path, rng, monkeypatch):
  _image_folder(tmp_path / "imgs", rng, n=1)
  cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")
  _forget_checksums(tmp_path / "d" / "cifar10")  # a changed image is then not refused
  first = cifar10.load_cifar10_raw(tmp_path / "d")
  assert (tmp_path / "d" / "cifar10" / "cache" / "fingerprint.txt").is_file()
  calls = []
  real = cifar10.load_raw_from
  monkeypatch.setattr(cifar10, "load_raw_from", lambda *a: calls.append(1) or real(*a))
  again = cifar10.load_cifar10_raw(tmp_path / "d")
  assert calls == []  # served from the cache
  np.testing.assert_array_equal(again[0], first[0])
  # Change one installed image: the cache no longer matches and is rebuilt.
  img = tmp_path / "d" / "cifar10" / "images" / "train" / "cat" / "0000.png"
  new = np.zeros((32, 32, 3), np.uint8)
  Image.fromarray(new).save(img)
  os.utime(img, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
  rebuilt = cifar10.load_cifar10_raw(tmp_path / "d")
  assert calls == [1]
  np.testing.assert_array_equal(rebuilt[0][3], new)
  # A damaged cache is rebuilt too, never trusted.
  (tmp_path / "d" / "cifar10" / "cache" / "x_train.npy").write_bytes(b"garbage")
  np.testing.assert_array_equal(cifar10.load_cifar10_raw(tmp_path / "d")[0][3], new)


def _flip(path, at):
  data = bytearray(path.read_bytes())
  data[at] ^= 0x01
  stat = path.stat()
  path.write_bytes(bytes(data))
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # no hint left but the bytes


@pytest.mark.parametrize("kind", ["batches", "images"])
def test_a_flipped_byte_in_an_installed_file_is_refused_at_load(tmp_path, rng, kind):
  if kind == "batches":
    _batches(tmp_path / "src", rng)
  else:
    _image_folder(tmp_path / "src", rng, n=1)
  cifar10.install_cifar10(tmp_path / "src", tmp_path / "d")
  root = tmp_path / "d" / "cifar10"
  # The oracle: coreutils' sha256sum reads the list the install wrote.
  check = subprocess.run(["sha256sum", "--quiet", "-c", cifar10.CHECKSUMS], cwd=root,
                         capture_output=True, text=True)
  assert check.returncode == 0, check.stdout + check.stderr
  listed = (root / cifar10.CHECKSUMS).read_text().splitlines()
  assert len(listed) == (6 if kind == "batches" else 20)
  good = cifar10.load_cifar10_raw(tmp_path / "d")
  shutil.rmtree(root / "cache")  # a load that decodes the source checks every file
  victim = root / listed[-1].partition("  ")[2]
  _flip(victim, victim.stat().st_size // 2)
  with pytest.raises(LmcError, match="damaged or changed since") as e:
    cifar10.load_cifar10_raw(tmp_path / "d")
  assert str(victim) in str(e.value) and "experiments.fetch --dataset=cifar10" in str(e.value)
  assert "\n" not in str(e.value)
  # The fetch again puts a verified copy in place, and the load passes.
  cifar10.install_cifar10(tmp_path / "src", tmp_path / "d")
  np.testing.assert_array_equal(cifar10.load_cifar10_raw(tmp_path / "d")[0], good[0])


def test_a_flipped_byte_in_the_cache_rebuilds_it_from_the_verified_source(tmp_path, rng):
  _batches(tmp_path / "src", rng)
  cifar10.install_cifar10(tmp_path / "src", tmp_path / "d")
  good = cifar10.load_cifar10_raw(tmp_path / "d")
  cached = tmp_path / "d" / "cifar10" / "cache" / "x_train.npy"
  _flip(cached, cached.stat().st_size - 1)  # a pixel: the array still loads and passes checks
  np.testing.assert_array_equal(cifar10.load_cifar10_raw(tmp_path / "d")[0], good[0])
  # A source damaged behind a good cache (same size and time) is refused all the same.
  batch = tmp_path / "d" / "cifar10" / "batches" / "data_batch_3"
  _flip(batch, batch.stat().st_size // 2)
  with pytest.raises(LmcError, match="data_batch_3 does not match"):
    cifar10.load_cifar10_raw(tmp_path / "d")


def test_the_list_itself_damaged_is_refused(tmp_path, rng):
  _batches(tmp_path / "src", rng)
  cifar10.install_cifar10(tmp_path / "src", tmp_path / "d")
  root = tmp_path / "d" / "cifar10"
  shutil.rmtree(root / "cache", ignore_errors=True)
  _flip(root / cifar10.CHECKSUMS, 0)
  with pytest.raises(LmcError, match="SHA256SUMS does not match the SHA-256 SOURCE.json"):
    cifar10.load_cifar10_raw(tmp_path / "d")


def test_corrupt_and_hostile_inputs(tmp_path, rng):
  _batches(tmp_path / "b", rng)
  cifar10.install_cifar10(tmp_path / "b", tmp_path / "d")
  _forget_checksums(tmp_path / "d" / "cifar10")  # the structure checks, as for older installs
  batch = tmp_path / "d" / "cifar10" / "batches" / "data_batch_3"
  batch.write_bytes(batch.read_bytes()[:100])
  with pytest.raises(LmcError, match="data_batch_3 is not a readable pickle"):
    cifar10.load_cifar10_raw(tmp_path / "d")

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  batch.write_bytes(pickle.dumps({b"data": Evil()}))
  with pytest.raises(LmcError, match="not a numpy array"):
    cifar10.load_cifar10_raw(tmp_path / "d")

  # A tar member that climbs out of the target directory is refused.
  bad = tmp_path / "bad.tgz"
  with tarfile.open(bad, "w:gz") as tar:
    info = tarfile.TarInfo("../../escape.txt")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"abc"))
  with pytest.raises(LmcError, match="outside"):
    cifar10.install_cifar10(bad, tmp_path / "e")
  assert not (tmp_path / "escape.txt").exists()
  # Truncated archive, wrong layout, missing source, nothing installed.
  (tmp_path / "cut.tgz").write_bytes(bad.read_bytes()[:20])
  with pytest.raises(LmcError, match="not a readable tar"):
    cifar10.install_cifar10(tmp_path / "cut.tgz", tmp_path / "e")
  (tmp_path / "empty").mkdir()
  with pytest.raises(LmcError, match="neither"):
    cifar10.install_cifar10(tmp_path / "empty", tmp_path / "e")
  with pytest.raises(LmcError, match="does not exist"):
    cifar10.install_cifar10(tmp_path / "nope", tmp_path / "e")
  with pytest.raises(LmcError, match="experiments.fetch --dataset=cifar10"):
    cifar10.load_cifar10_raw(tmp_path / "e")


def test_wrong_image_size_is_refused(tmp_path, rng):
  _image_folder(tmp_path / "imgs", rng, n=1)
  small = tmp_path / "imgs" / "test" / "dog" / "0000.png"
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(small)
  with pytest.raises(LmcError, match=f"{small} is 16x16, not 32x32.*pass another --source"):
    cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")  # refused before installing
  assert not (tmp_path / "d" / "cifar10").exists()
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(small)
  cifar10.install_cifar10(tmp_path / "imgs", tmp_path / "d")
  _forget_checksums(tmp_path / "d" / "cifar10")  # the structure checks, as for older installs
  # An installed image changed afterwards is refused when loaded, with how to reinstall.
  installed = tmp_path / "d" / "cifar10" / "images" / "test" / "dog" / "0000.png"
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(installed)
  os.utime(installed, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
  with pytest.raises(LmcError, match="not 32x32.*experiments.fetch --dataset=cifar10"):
    cifar10.load_cifar10_raw(tmp_path / "d")


def test_tfds_source_through_a_stand_in_module(tmp_path, rng, monkeypatch):
  x = rng.integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
  y = np.arange(6) % 10
  seen = {}

  def load(name, split, data_dir, batch_size, as_supervised, download):
    seen.update(name=name, data_dir=data_dir, download=download)
    return [(x, y), (x[:2], y[:2])]
  fake = types.SimpleNamespace(load=load, as_numpy=lambda t: t)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace())  # what tfds reads with
  (tmp_path / "tfds").mkdir()
  info = cifar10.install_cifar10(f"tfds:{tmp_path / 'tfds'}", tmp_path / "d")
  assert info["label"] == "CIFAR-10 (TFDS)"
  x_tr, y_tr, x_te, _, _ = cifar10.load_cifar10_raw(tmp_path / "d")
  np.testing.assert_array_equal(x_tr, x)
  assert seen == {"name": "cifar10", "data_dir": str(tmp_path / "tfds"), "download": False}


def test_tfds_missing_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(LmcError,
                     match=r"needs tensorflow-datasets and TensorFlow.*pip install \.\[tfds\]"):
    cifar10.install_cifar10(f"tfds:{tmp_path}", tmp_path / "d")


def test_tfds_without_tensorflow_names_tensorflow(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace())
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  with pytest.raises(LmcError, match=r"TensorFlow is not.*pip install tensorflow"):
    cifar10.install_cifar10(f"tfds:{tmp_path}", tmp_path / "d")


def test_a_real_tiny_tfds_dataset_reads_back(tmp_path, rng):
  """A TFDS builder generated here, prepared on disk by TFDS and read back through TF."""
  tfds = pytest.importorskip("tensorflow_datasets",
                             reason="the [tfds] extra is not installed (pip install .[tfds])")
  pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install .[tfds])")
  from lmc_jax.data.tfds import load_tfds_arrays
  images = rng.integers(0, 256, (10, 32, 32, 3)).astype(np.uint8)
  labels = np.arange(10) % 10

  class TinyCifarForLmc(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, supervised_keys=("image", "label"),
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(32, 32, 3)),
              "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(slice(0, 7)),
              "test": self._generate_examples(slice(7, 10))}

    def _generate_examples(self, part):
      for k in range(10)[part]:
        yield k, {"image": images[k], "label": int(labels[k])}

  TinyCifarForLmc(data_dir=str(tmp_path)).download_and_prepare()
  x_tr, y_tr, x_te, y_te = load_tfds_arrays("tiny_cifar_for_lmc", str(tmp_path))
  order = np.argsort([int(np.flatnonzero((images == a).all((1, 2, 3)))[0]) for a in x_tr])
  np.testing.assert_array_equal(x_tr[order], images[:7])  # PNG-encoded: lossless
  np.testing.assert_array_equal(y_tr[order], labels[:7])
  assert x_te.shape == (3, 32, 32, 3) and sorted(y_te.tolist()) == labels[7:].tolist()
