"""CIFAR-10 from the formats researchers have: the `cifar-10-batches-py` pickles (or
the tarball holding them), an image-folder layout `{train,test}/<class>/*.jpg|png` (the
JPEG re-encode in shared/data is one, shipped as a .tgz), or a TFDS-prepared copy.

`install_cifar10` puts a source into `<data_dir>/cifar10/` and records in SOURCE.json
what it is (results from the JPEG re-encode are labelled "CIFAR-10 (JPEG re-encode)").
`load_cifar10_raw` decodes it once into `cache/`; the cache stores a fingerprint of
the source files (paths, sizes, modification times) and is rebuilt when they change.
Checksums: the install records the SHA-256 of every file it put there in `SHA256SUMS`
(`sha256sum -c` reads it; its own SHA-256 is in SOURCE.json). Every load checks every
installed file against it, and each cached array against the SHA-256 the cache recorded
when it wrote it (a mismatch rebuilds the cache from the verified source). A damaged
install is named, with the fetch command.
An install is built beside the installed copy and checked as a load checks it before it
replaces that copy, and archives unpack only plain folders and files, inside the folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from lmc_jax.atomic_files import atomic_write_bytes, atomic_write_json, sha256_file
from lmc_jax.data.archives import safe_extract
from lmc_jax.data.checks import check_split
from lmc_jax.data.safe_pickle import load_arrays
from lmc_jax.data.staging import replacing
from lmc_jax.data.tfds import load_tfds_arrays
from lmc_jax.errors import LmcError
from lmc_jax.result_files import SOURCE_FORMAT
from lmc_jax.schema import check_format

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)  # the study's per-channel normalisation
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
BATCHES = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SHAPE = (32, 32, 3)


def _root(data_dir) -> Path:
  return Path(data_dir) / "cifar10"


def fetch_hint(data_dir) -> str:
  return (f"run `python -m experiments.fetch --dataset=cifar10 --source=PATH "
          f"--data_dir={data_dir}` with PATH the cifar-10-python.tar.gz tarball, its "
          "cifar-10-batches-py folder, an image folder {train,test}/<class>/, the JPEG "
          "re-encode .tgz, or tfds:<TFDS data dir>")


# ---------------------------------------------------------------- decoding each format
def _namer(folder: Path, shown):
  """How files under `folder` are named in errors: as they are, or as `shown` plus their
  path relative to `folder` (a staging folder is named after the source it came from)."""
  if shown is None:
    return str
  return lambda p: f"{shown}{Path(p).relative_to(folder).as_posix()}"


def read_batches(folder: Path, shown=None, fix: str = "install the data again"):
  """The pickled batches: data_batch_1..5 (train) and test_batch, as uint8 NHWC, each one
  checked (uint8 rows of 3072 pixels, integer labels in 0..9, one label per image)."""
  name_of = _namer(folder, shown)

  def one(name):
    path = folder / name
    where = name_of(path)
    if not path.is_file():
      raise LmcError(f"CIFAR-10 batch {where} is missing; {fix}.")
    d = load_arrays(path.read_bytes(), where)
    if not isinstance(d, dict):
      raise LmcError(f"{where} is not a CIFAR-10 batch (no dict inside); {fix}.")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
      raise LmcError(f"{where} is not a CIFAR-10 batch (it has no 'data' and 'labels'); {fix}.")
    try:
      data, y = np.asarray(d["data"]), np.asarray(d["labels"])
    except ValueError as e:  # ragged lists
      raise LmcError(f"{where} is not a CIFAR-10 batch ({e}); {fix}.") from None
    if data.dtype != np.uint8:
      raise LmcError(f"CIFAR-10 batch {where} holds pixels of dtype {data.dtype}, not uint8; "
                     f"{fix}.")
    if data.ndim != 2 or data.shape[1] != 3072:
      raise LmcError(f"CIFAR-10 batch {where} holds data of shape {data.shape}, not (n, 3072) "
                     f"rows of 3x32x32 pixels; {fix}.")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    check_split(x, y, IMAGE_SHAPE, f"CIFAR-10 batch {where} images",
                f"CIFAR-10 batch {where} labels", fix)
    return x, y.astype(np.int64)
  train = [one(f"data_batch_{i}") for i in range(1, 6)]
  x_te, y_te = one("test_batch")
  return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_te, y_te)


def read_image_folder(folder: Path, shown=None, fix: str = "install the data again"):
  """`{train,test}/<class>/*` with the class folders in CIFAR-10's label order; every
  class folder of each split must hold images, each a 32x32 picture."""
  from PIL import Image
  name_of = _namer(folder, shown)
  out = []
  for split in ("train", "test"):
    xs, ys = [], []
    for label, cls in enumerate(CLASSES):
      d = folder / split / cls
      if not d.is_dir():
        raise LmcError(f"Image folder {name_of(d)} is missing; the layout must be "
                       "{train,test}/<class>/*.jpg|png with CIFAR-10's ten class names.")
      files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
      if not files:
        raise LmcError(f"Image folder {name_of(d)} holds no {'/'.join(IMAGE_SUFFIXES)} images, "
                       f"and every class of a CIFAR-10 split has some; {fix}.")
      for f in files:
        xs.append(_decode(Image, f, name_of(f), fix))
        ys.append(label)
    out += [np.stack(xs), np.asarray(ys, np.int64)]
  return tuple(out)


def _decode(Image, f: Path, where: str, fix: str) -> np.ndarray:
  """Image file `f` as uint8 (32, 32, 3); its size is checked before it is decoded."""
  try:
    with Image.open(f) as im:
      size = im.size
      a = np.asarray(im.convert("RGB"), np.uint8) if size == (32, 32) else None
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise LmcError(f"Image {where} cannot be decoded ({e}); replace or remove it.") from None
  if a is None:
    raise LmcError(f"Image {where} is {size[0]}x{size[1]}, not 32x32, so this is not CIFAR-10; "
                   f"{fix}.")
  return a


def check_arrays(arrays, where: str, fix: str):
  """(x_train, y_train, x_test, y_test) as one CIFAR-10 copy has them: uint8 images
  (n, 32, 32, 3), integer labels (n,) in 0..9, no empty split; `where` names the copy."""
  x_tr, y_tr, x_te, y_te = arrays
  check_split(x_tr, y_tr, IMAGE_SHAPE, f"CIFAR-10 train images of {where}",
              f"CIFAR-10 train labels of {where}", fix)
  check_split(x_te, y_te, IMAGE_SHAPE, f"CIFAR-10 test images of {where}",
              f"CIFAR-10 test labels of {where}", fix)
  return arrays


# ---------------------------------------------------------------- installing a source
def _describe(folder: Path):
  """(kind, folder with the data) for an extracted or given folder, or None."""
  for cand in (folder, folder / BATCHES):
    if (cand / "data_batch_1").is_file():
      return "cifar-10-python", cand
  for cand in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
    if (cand / "train").is_dir() and (cand / "test").is_dir():
      return "image-folder", cand
  return None


def _data_folder(kind: str) -> str:
  return "batches" if kind == "cifar-10-python" else "images"


CHECKSUMS = "SHA256SUMS"


def _record_checksums(root: Path, data: Path, info: dict) -> None:
  """Writes `root/SHA256SUMS`, one `<sha256>  <path under root>` line per file under
  `data` (sha256sum's format), and records the file and its own SHA-256 in `info`."""
  lines = []
  for path in sorted(p for p in data.rglob("*") if p.is_file()):
    lines.append(f"{sha256_file(path)}  {path.relative_to(root).as_posix()}\n")
  text = "".join(lines).encode()
  atomic_write_bytes(root / CHECKSUMS, lambda f: f.write(text), len(text))
  info.update(checksums=CHECKSUMS, checksums_sha256=hashlib.sha256(text).hexdigest())


def verify_installed(info: dict, root: Path, fix: str) -> None:
  """Every file `root/SHA256SUMS` lists has the SHA-256 it had when it was installed, and
  the list itself the one SOURCE.json records; a copy installed before checksums were
  recorded (or TFDS's, which TFDS owns) is checked for structure only. Refuses a damaged
  file in one sentence naming it and `fix`."""
  name = info.get("checksums")
  if name is None:
    return
  manifest = root / CHECKSUMS
  try:
    text = manifest.read_bytes()
  except OSError:
    raise LmcError(f"{manifest}, the checksums recorded when CIFAR-10 was installed, is "
                   f"missing; {fix}.") from None
  if hashlib.sha256(text).hexdigest() != info.get("checksums_sha256"):
    raise LmcError(f"{manifest} does not match the SHA-256 SOURCE.json recorded for it: the "
                   f"install was damaged or changed since; {fix}.")
  for line in text.decode("utf-8", "replace").splitlines():
    want, _, rel = line.partition("  ")
    path = root / rel
    if not path.is_file():
      raise LmcError(f"{path}, installed with CIFAR-10, is missing; {fix}.")
    if sha256_file(path) != want:
      raise LmcError(f"{path} does not match the SHA-256 recorded when it was installed: it "
                     f"was damaged or changed since; {fix}.")


def install_cifar10(source, data_dir) -> dict:
  """Copies or extracts `source` into `<data_dir>/cifar10/` and writes SOURCE.json.

  The new copy is built in a staging folder beside `cifar10/`, decoded and checked as a
  load checks it (and cached), and only then swapped in; a refused source leaves the
  installed copy as it was. Returns the SOURCE.json dict: kind, label, where it came from.
  """
  source = str(source)
  root = _root(data_dir)
  fix = "it is not a usable CIFAR-10 copy, pass another --source (the installed one is unchanged)"
  if source.startswith("tfds:"):
    info = {"format": SOURCE_FORMAT, "kind": "tfds", "label": "CIFAR-10 (TFDS)",
            "tfds_data_dir": os.path.abspath(source[5:]), "from": source}
    with replacing(root) as staging:
      atomic_write_json(staging / "SOURCE.json", info)
      cached_arrays(info, staging, fix)
    return info
  src = Path(source)
  if not src.exists():
    raise LmcError(f"CIFAR-10 source {src} does not exist; " + fetch_hint(data_dir))
  with replacing(root) as staging:
    if src.is_file():
      unpacked = staging / "unpacked"
      unpacked.mkdir()
      safe_extract(src, unpacked)
      found = _describe(unpacked)
      if found:
        rel = found[1].relative_to(unpacked).as_posix()
        shown = f"{src}:" + ("" if rel == "." else f"{rel}/")
    else:
      unpacked = None
      found = _describe(src)
      shown = f"{found[1]}/" if found else None
    if not found:
      raise LmcError(f"{src} holds neither {BATCHES} batches nor a {{train,test}}/<class>/ image "
                     "folder; " + fetch_hint(data_dir))
    kind, folder = found
    data = staging / _data_folder(kind)
    if unpacked is None:
      shutil.copytree(folder, data)
    else:
      os.replace(folder, data)
      if unpacked.exists():
        shutil.rmtree(unpacked)
    jpeg = kind == "image-folder" and any(data.glob("train/*/*.jpg"))
    label = "CIFAR-10" if kind == "cifar-10-python" else (
        "CIFAR-10 (JPEG re-encode)" if jpeg else "CIFAR-10 (image folder)")
    info = {"format": SOURCE_FORMAT, "kind": kind, "label": label, "from": str(src.resolve())}
    if src.is_file():
      info["sha256"] = sha256_file(src)
    _record_checksums(staging, data, info)
    atomic_write_json(staging / "SOURCE.json", info)
    cached_arrays(info, staging, fix, shown=shown)
  return info


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


def load_raw_from(info: dict, root: Path, fix: str = "install the data again", shown=None):
  """The four arrays of the copy `info` describes under `root`, decoded and checked."""
  if info["kind"] == "cifar-10-python":
    arrays = read_batches(root / "batches", shown, fix)
    where = shown or root / "batches"
  elif info["kind"] == "image-folder":
    arrays = read_image_folder(root / "images", shown, fix)
    where = shown or root / "images"
  elif info["kind"] == "tfds":
    arrays = load_tfds_arrays("cifar10", info["tfds_data_dir"])
    where = f"TFDS data dir {info['tfds_data_dir']}"
  else:
    raise LmcError(f"{root / 'SOURCE.json'} names an unknown kind {info['kind']!r}; install the "
                   "data again.")
  return check_arrays(arrays, str(where).rstrip("/:"), fix)


KINDS = ("cifar-10-python", "image-folder", "tfds")


def read_source_info(data_dir) -> dict:
  path = _root(data_dir) / "SOURCE.json"
  if not path.is_file():
    raise LmcError(f"CIFAR-10 is not installed in {_root(data_dir)}; " + fetch_hint(data_dir) + ".")
  try:
    info = check_format(json.loads(path.read_text()), path, SOURCE_FORMAT)
  except LmcError:
    raise
  except ValueError:
    raise LmcError(f"{path} is not valid JSON; " + fetch_hint(data_dir) + ".") from None
  if not isinstance(info, dict):
    problem = f"it holds a {type(info).__name__}, not an object"
  elif info.get("kind") not in KINDS:
    problem = f"its kind {info.get('kind')!r} is not one of {', '.join(KINDS)}"
  elif not isinstance(info.get("label"), str):
    problem = "it has no label"
  elif info["kind"] == "tfds" and not isinstance(info.get("tfds_data_dir"), str):
    problem = "it names no tfds_data_dir"
  else:
    return info
  raise LmcError(f"{path} is not a CIFAR-10 SOURCE.json ({problem}); " + fetch_hint(data_dir) + ".")


CACHE_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _read_cache(cache: Path, stamp: Path, fp: str):
  """The cached arrays where the stamp holds fingerprint `fp` and each array's bytes have
  the SHA-256 the stamp recorded when they were written; else None."""
  try:
    lines = stamp.read_text().splitlines()
    if not lines or lines[0] != fp:
      return None
    want = dict(line.split("  ", 1)[::-1] for line in lines[1:])
    arrays = []
    for k in CACHE_ARRAYS:
      data = (cache / f"{k}.npy").read_bytes()
      if hashlib.sha256(data).hexdigest() != want.get(f"{k}.npy"):
        return None
      arrays.append(np.load(io.BytesIO(data), allow_pickle=False))
    return tuple(check_arrays(arrays, str(cache), "rebuild the cache"))
  except (OSError, ValueError, EOFError):  # LmcError included
    return None  # an unreadable or damaged cache is rebuilt, never trusted


def cached_arrays(info: dict, root: Path, fix: str, shown=None):
  """The four checked arrays of the copy under `root`, from `root/cache` where its
  fingerprint matches the source and its arrays their recorded SHA-256 and the checks,
  else decoded from the source, checked (a bad file is named, with `fix`) and cached, the
  stamp (fingerprint and each array's SHA-256) written last. Either way every installed
  file is first verified against the checksums recorded at install."""
  verify_installed(info, root, fix)
  fp = _fingerprint(info, root)
  cache = root / "cache"
  stamp = cache / "fingerprint.txt"
  if stamp.is_file():
    arrays = _read_cache(cache, stamp, fp)
    if arrays is not None:
      return arrays
  arrays = load_raw_from(info, root, fix, shown)
  stamp.unlink(missing_ok=True)  # the cache is invalid until every array is written
  lines = [fp]
  for k, a in zip(CACHE_ARRAYS, arrays):
    buf = io.BytesIO()
    np.save(buf, a)
    data = buf.getvalue()
    atomic_write_bytes(cache / f"{k}.npy", lambda f, data=data: f.write(data), len(data))
    lines.append(f"{hashlib.sha256(data).hexdigest()}  {k}.npy")
  text = "\n".join(lines).encode()
  atomic_write_bytes(stamp, lambda f: f.write(text), len(text))
  return tuple(arrays)


def load_cifar10_raw(data_dir):
  """(x_train uint8 (50000, 32, 32, 3), y_train, x_test (10000, ...), y_test, label).

  The decoded arrays are cached as `.npy` files in `cache/` (one plain read each, no
  decoding), with the source fingerprint written last; a cache whose fingerprint
  does not match the source, or that cannot be read, is rebuilt. Every array is checked
  (uint8 32x32x3 images, labels in 0..9, one per image, no empty split); a bad file is
  named in the error, which says how to install the data again.
  """
  info = read_source_info(data_dir)
  return (*cached_arrays(info, _root(data_dir), fetch_hint(data_dir)), info["label"])


def normalise(images: np.ndarray) -> np.ndarray:
  """uint8 (n, 32, 32, 3) -> float32 (n, 3072), per channel (x / 255 - mean) / std."""
  x = (images.astype(np.float32) / 255.0 - MEAN) / STD
  return x.reshape(len(images), -1).astype(np.float32)
