"""CIFAR-10 from the formats researchers have: the `cifar-10-batches-py` pickles (or
the tarball holding them), an image-folder layout `{train,test}/<class>/*.jpg|png` (the
JPEG re-encode in shared/data is one, shipped as a .tgz), or a TFDS-prepared copy.

`install_cifar10` puts a source into `<data_dir>/cifar10/` and records in SOURCE.json
what it is (results from the JPEG re-encode are labelled "CIFAR-10 (JPEG re-encode)").
`load_cifar10_raw` decodes it once into `cache/`; the cache stores a fingerprint of
the source files (paths, sizes, modification times) and is rebuilt when they change.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np

from lmc_jax.atomic_files import atomic_write_bytes, atomic_write_json, sha256_file
from lmc_jax.data.safe_pickle import load_arrays
from lmc_jax.errors import LmcError
from lmc_jax.result_files import SOURCE_FORMAT, check_format

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)  # the study's per-channel normalisation
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
BATCHES = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _root(data_dir) -> Path:
  return Path(data_dir) / "cifar10"


def fetch_hint(data_dir) -> str:
  return (f"run `python -m experiments.fetch --dataset=cifar10 --source=PATH "
          f"--data_dir={data_dir}` with PATH the cifar-10-python.tar.gz tarball, its "
          "cifar-10-batches-py folder, an image folder {train,test}/<class>/, the JPEG "
          "re-encode .tgz, or tfds:<TFDS data dir>")


# ---------------------------------------------------------------- decoding each format
def read_batches(folder: Path):
  """The pickled batches: data_batch_1..5 (train) and test_batch, as uint8 NHWC."""
  def one(name):
    path = folder / name
    if not path.is_file():
      raise LmcError(f"CIFAR-10 batch {path} is missing; install the data again.")
    d = load_arrays(path.read_bytes(), str(path))
    if not isinstance(d, dict):
      raise LmcError(f"{path} is not a CIFAR-10 batch (no dict inside); install the data again.")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    try:
      x = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
      y = np.asarray(d["labels"], np.int64)
    except (KeyError, ValueError) as e:
      raise LmcError(f"{path} is not a CIFAR-10 batch ({e}); install the data again.") from None
    if len(x) != len(y):
      raise LmcError(f"{path} has {len(x)} images but {len(y)} labels; install the data again.")
    return x, y
  train = [one(f"data_batch_{i}") for i in range(1, 6)]
  x_te, y_te = one("test_batch")
  return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_te, y_te)


def read_image_folder(folder: Path):
  """`{train,test}/<class>/*` with the class folders in CIFAR-10's label order."""
  from PIL import Image
  out = []
  for split in ("train", "test"):
    xs, ys = [], []
    for label, cls in enumerate(CLASSES):
      d = folder / split / cls
      if not d.is_dir():
        raise LmcError(f"Image folder {d} is missing; the layout must be "
                       "{train,test}/<class>/*.jpg|png with CIFAR-10's ten class names.")
      for f in sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
          with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"), np.uint8)
        except OSError as e:
          raise LmcError(f"Image {f} cannot be decoded ({e}); replace or remove it.") from None
        if a.shape != (32, 32, 3):
          raise LmcError(f"Image {f} is {a.shape[1]}x{a.shape[0]}, not 32x32; this is not "
                         "CIFAR-10.")
        xs.append(a)
        ys.append(label)
    if not xs:
      raise LmcError(f"No images under {folder / split}.")
    out += [np.stack(xs), np.asarray(ys, np.int64)]
  return tuple(out)


# ---------------------------------------------------------------- installing a source
def _safe_extract(archive: Path, dest: Path):
  try:
    with tarfile.open(archive) as tar:
      for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not str(target).startswith(str(dest.resolve())) or m.issym() or m.islnk():
          raise LmcError(f"{archive} holds a member {m.name!r} that would land outside "
                         f"{dest}; refusing to extract it.")
      tar.extractall(dest)
  except (tarfile.TarError, EOFError, OSError) as e:
    raise LmcError(f"{archive} is not a readable tar archive ({e}).") from None


def _describe(folder: Path):
  """(kind, folder with the data) for an extracted or given folder, or None."""
  for cand in (folder, folder / BATCHES):
    if (cand / "data_batch_1").is_file():
      return "cifar-10-python", cand
  for cand in [folder] + [p for p in folder.iterdir() if p.is_dir()]:
    if (cand / "train").is_dir() and (cand / "test").is_dir():
      return "image-folder", cand
  return None


def install_cifar10(source, data_dir) -> dict:
  """Copies or extracts `source` into `<data_dir>/cifar10/` and writes SOURCE.json.

  Returns the SOURCE.json dict: kind, label, where it came from."""
  source = str(source)
  root = _root(data_dir)
  if source.startswith("tfds:"):
    info = {"format": SOURCE_FORMAT, "kind": "tfds", "label": "CIFAR-10 (TFDS)",
            "tfds_data_dir": source[5:], "from": source}
    load_raw_from(info, root)  # checks it loads before anything is written
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "SOURCE.json", info)
    return info
  src = Path(source)
  if not src.exists():
    raise LmcError(f"CIFAR-10 source {src} does not exist; " + fetch_hint(data_dir))
  staging = root.parent / ".cifar10-staging"
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  try:
    if src.is_file():
      _safe_extract(src, staging)
      found = _describe(staging)
    else:
      found = _describe(src)
      if found:
        shutil.copytree(found[1], staging / "data")
        found = (found[0], staging / "data")
    if not found:
      raise LmcError(f"{src} holds neither {BATCHES} batches nor a {{train,test}}/<class>/ image "
                     "folder; " + fetch_hint(data_dir))
    kind, folder = found
    jpeg = kind == "image-folder" and any(folder.glob("train/*/*.jpg"))
    label = "CIFAR-10" if kind == "cifar-10-python" else (
        "CIFAR-10 (JPEG re-encode)" if jpeg else "CIFAR-10 (image folder)")
    info = {"format": SOURCE_FORMAT, "kind": kind, "label": label, "from": str(src.resolve())}
    if src.is_file():
      info["sha256"] = sha256_file(src)
    # Replace the installed copy only once the new one is complete.
    target = root / ("batches" if kind == "cifar-10-python" else "images")
    root.mkdir(parents=True, exist_ok=True)
    for old in ("batches", "images", "cache"):
      p = root / old
      shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    os.replace(folder, target)
    atomic_write_json(root / "SOURCE.json", info)
    return info
  finally:
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- loading with a cache
def _fingerprint(info: dict, root: Path) -> str:
  """SHA-256 over SOURCE.json and every source file's relative path, size and mtime."""
  if info["kind"] == "tfds":
    base = Path(info["tfds_data_dir"])
  else:
    base = root / ("batches" if info["kind"] == "cifar-10-python" else "images")
  lines = [json.dumps(info, sort_keys=True)]

  def walk(path: str, rel: str):
    with os.scandir(path) as it:
      entries = sorted(it, key=lambda e: e.name)
    for e in entries:
      if e.is_dir(follow_symlinks=False):
        walk(e.path, rel + e.name + "/")
      else:
        st = e.stat()
        lines.append(f"{rel}{e.name}|{st.st_size}|{st.st_mtime_ns}")

  if base.is_dir():
    walk(str(base), "")
  return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_raw_from(info: dict, root: Path):
  if info["kind"] == "cifar-10-python":
    return read_batches(root / "batches")
  if info["kind"] == "image-folder":
    return read_image_folder(root / "images")
  if info["kind"] == "tfds":
    from lmc_jax.data.tfds import load_tfds_arrays
    return load_tfds_arrays("cifar10", info["tfds_data_dir"])
  raise LmcError(f"{root / 'SOURCE.json'} names an unknown kind {info['kind']!r}; install the "
                 "data again.")


def read_source_info(data_dir) -> dict:
  path = _root(data_dir) / "SOURCE.json"
  if not path.is_file():
    raise LmcError(f"CIFAR-10 is not installed in {_root(data_dir)}; " + fetch_hint(data_dir) + ".")
  try:
    return check_format(json.loads(path.read_text()), path, SOURCE_FORMAT)
  except ValueError:
    raise LmcError(f"{path} is not valid JSON; install the data again.") from None


CACHE_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_cifar10_raw(data_dir):
  """(x_train uint8 (50000, 32, 32, 3), y_train, x_test (10000, ...), y_test, label).

  The decoded arrays are cached as `.npy` files in `cache/` (one plain read each, no
  decoding), with the source fingerprint written last; a cache whose fingerprint
  does not match the source, or that cannot be read, is rebuilt.
  """
  root = _root(data_dir)
  info = read_source_info(data_dir)
  fp = _fingerprint(info, root)
  cache = root / "cache"
  stamp = cache / "fingerprint.txt"
  if stamp.is_file() and stamp.read_text() == fp:
    try:
      arrays = [np.load(cache / f"{k}.npy", allow_pickle=False) for k in CACHE_ARRAYS]
      return (*arrays, info["label"])
    except (OSError, ValueError, EOFError):
      pass  # an unreadable cache is rebuilt
  arrays = load_raw_from(info, root)
  stamp.unlink(missing_ok=True)  # the cache is invalid until every array is written
  for k, a in zip(CACHE_ARRAYS, arrays):
    atomic_write_bytes(cache / f"{k}.npy", lambda f, a=a: np.save(f, a))
  atomic_write_bytes(stamp, lambda f: f.write(fp.encode()))
  return (*arrays, info["label"])


def normalise(images: np.ndarray) -> np.ndarray:
  """uint8 (n, 32, 32, 3) -> float32 (n, 3072), per channel (x / 255 - mean) / std."""
  x = (images.astype(np.float32) / 255.0 - MEAN) / STD
  return x.reshape(len(images), -1).astype(np.float32)
