"""A user's own dataset: one `.npz` file (numpy.savez or savez_compressed) holding `x_train`,
`y_train`, `x_test`, `y_test` and optionally a scalar `num_classes`; other arrays are ignored.

Inputs may be flat rows `(n, d)`, grey images `(n, H, W)` (read as `(n, H, W, 1)`) or images
`(n, H, W, C)`; they become float32 rows `(n, d)` in C order, so an image row is its pixels
in HWC order, as the built-in CIFAR-10 rows are. uint8 inputs are scaled to [0, 1]; every
other numeric type is kept as it is. Labels become int32 `(n,)`. The number of classes is
`num_classes` where stored, else the largest label over both splits plus one.

Every array's shape and dtype are checked from its `.npy` header before any data is read,
so `npz_info` can describe a file by reading its headers and its labels only.
"""
from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from lmc_jax.atomic_files import sha256_file
from lmc_jax.data.dataset import Dataset, DatasetInfo
from lmc_jax.errors import LmcError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
NUM_CLASSES = "num_classes"
SAVEZ = "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
# Reading a member can fail in the zip layer (a bad CRC or deflate stream) or in the .npy one.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


class Header(NamedTuple):
  shape: Tuple[int, ...]
  dtype: np.dtype


class Layout(NamedTuple):
  """What the headers of a checked file say: per-sample shape of x, and split sizes."""
  sample_shape: Tuple[int, ...]  # x's shape after the sample axis: (d,), (H, W) or (H, W, C)
  n_train: int
  n_test: int

  @property
  def d_in(self) -> int:
    return int(np.prod(self.sample_shape))

  @property
  def image_shape(self) -> Optional[Tuple[int, int, int]]:
    """(H, W, C) of image inputs, None for flat rows."""
    if len(self.sample_shape) == 1:
      return None
    return tuple(self.sample_shape) + (1,) * (3 - len(self.sample_shape))


# ---------------------------------------------------------------- the zip and its headers
@contextlib.contextmanager
def _opened(path: Path):
  """`path` open as a zip; a missing or unreadable file is refused by name."""
  if not path.is_file():
    what = "is a folder, not a file" if path.is_dir() else "does not exist"
    raise LmcError(f"npz dataset {path} {what}; give the path of a .npz file written by "
                   f"{SAVEZ}.")
  try:
    z = zipfile.ZipFile(path)
  except (OSError, zipfile.BadZipFile) as e:
    raise LmcError(f"npz dataset {path} is not a readable .npz (zip) file ({e}); write it "
                   f"with {SAVEZ}.") from None
  with z:
    yield z


def _members(z: zipfile.ZipFile) -> Dict[str, str]:
  """Array name -> zip member name, as numpy.load names them (the member less `.npy`)."""
  return {m[:-4]: m for m in z.namelist() if m.endswith(".npy")}


def _read_header(z: zipfile.ZipFile, member: str, name: str, path: Path) -> Header:
  """Shape and dtype from the `.npy` header of `member`, reading no data."""
  try:
    with z.open(member) as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
      else:  # 3.0 exists only for structured dtypes with non-latin-1 field names
        raise ValueError(f".npy format version {version[0]}.{version[1]} holds no plain array")
  except _READ_ERRORS as e:
    raise LmcError(f"Array {name} in npz dataset {path} cannot be read ({e}); write the file "
                   "again with numpy.savez.") from None
  return Header(tuple(int(s) for s in shape), np.dtype(dtype))


def _read_array(z: zipfile.ZipFile, member: str, name: str, path: Path) -> np.ndarray:
  try:
    with z.open(member) as f:
      return np.lib.format.read_array(f, allow_pickle=False)
  except _READ_ERRORS as e:
    raise LmcError(f"Array {name} in npz dataset {path} cannot be read ({e}); write the file "
                   "again with numpy.savez.") from None


def _headers(z: zipfile.ZipFile, path: Path) -> Dict[str, Header]:
  """The headers of the four arrays and of `num_classes` where stored, each one checked."""
  members = _members(z)
  missing = [a for a in ARRAYS if a not in members]
  if missing:
    held = ", ".join(sorted(members)) or "no arrays"
    raise LmcError(f"npz dataset {path} has no array {missing[0]} (it holds {held}); write it "
                   f"with {SAVEZ}.")
  names = ARRAYS + ((NUM_CLASSES,) if NUM_CLASSES in members else ())
  heads = {a: _read_header(z, members[a], a, path) for a in names}
  for a, h in heads.items():
    if h.dtype.hasobject or h.dtype.kind not in ("u", "i", "f", "b"):
      raise LmcError(f"Array {a} in npz dataset {path} has dtype {h.dtype}, not a number type; "
                     "save it as a plain numeric array (e.g. float32 inputs, int64 labels).")
  return heads


def _layout(heads: Dict[str, Header], path: Path) -> Layout:
  """The checks that headers alone decide: shapes, dtypes, sizes of both splits."""
  for split in ("train", "test"):
    xs, ys = heads[f"x_{split}"], heads[f"y_{split}"]
    where = f"Array x_{split} in npz dataset {path}"
    if xs.dtype.kind == "b":
      raise LmcError(f"{where} has dtype bool, not a number type; save it as uint8 or float32.")
    if not 2 <= len(xs.shape) <= 4:
      raise LmcError(f"{where} has shape {xs.shape}, not (n, d), (n, H, W) or (n, H, W, C); "
                     "save the inputs with the sample axis first.")
    if xs.shape[0] == 0:
      raise LmcError(f"{where} holds no samples; save at least one {split} sample.")
    if 0 in xs.shape[1:]:
      raise LmcError(f"{where} has shape {xs.shape}, so its samples hold no values; save "
                     "inputs with at least one feature.")
    where_y = f"Array y_{split} in npz dataset {path}"
    if ys.dtype.kind not in ("u", "i"):
      raise LmcError(f"{where_y} has dtype {ys.dtype}, not an integer type; save the labels as "
                     "integers 0..num_classes-1.")
    if len(ys.shape) != 1:
      raise LmcError(f"{where_y} has shape {ys.shape}, not (n,); save one integer label per "
                     "sample.")
    if ys.shape[0] != xs.shape[0]:
      raise LmcError(f"{where_y} holds {ys.shape[0]} labels but x_{split} holds {xs.shape[0]} "
                     "samples; save one label per sample.")
  tr, te = heads["x_train"].shape[1:], heads["x_test"].shape[1:]
  if tr != te:
    raise LmcError(f"Arrays x_train and x_test in npz dataset {path} have samples of shape {tr} "
                   f"and {te}; save both splits with the same per-sample shape.")
  nc = heads.get(NUM_CLASSES)
  if nc is not None and (nc.shape != () or nc.dtype.kind not in ("u", "i")):
    raise LmcError(f"Array {NUM_CLASSES} in npz dataset {path} has shape {nc.shape} and dtype "
                   f"{nc.dtype}, not one integer; save it as num_classes=np.int64(k), or leave "
                   "it out to use the largest label plus one.")
  return Layout(tr, heads["x_train"].shape[0], heads["x_test"].shape[0])


def _num_classes(y_train: np.ndarray, y_test: np.ndarray, stored, path: Path) -> int:
  """Classes of labels that passed `_layout`: `stored` (a 0-d array) if given, else the
  largest label + 1; refused below 2 or with a label out of range."""
  for name, y in (("y_train", y_train), ("y_test", y_test)):
    if y.min() < 0:  # _layout saw at least one label in each split
      raise LmcError(f"Array {name} in npz dataset {path} holds the negative label "
                     f"{int(y.min())}; save labels as integers 0..num_classes-1.")
  top = int(max(y_train.max(), y_test.max()))
  if top >= np.iinfo(np.int32).max:
    raise LmcError(f"Arrays y_train and y_test in npz dataset {path} hold the label {top}, too "
                   "large for int32 (and for a model with one output per class); save labels "
                   "as integers 0..num_classes-1.")
  if stored is not None:
    k = int(stored)
    if k < 2 or k <= top:
      raise LmcError(f"Array {NUM_CLASSES} in npz dataset {path} is {k}, but it must be at least "
                     f"2 and above every label (the largest is {top}); save num_classes="
                     f"{max(top + 1, 2)} or leave it out.")
    return k
  if top < 1:
    raise LmcError(f"Arrays y_train and y_test in npz dataset {path} hold only the label {top}, "
                   "one class; save labels of at least 2 classes.")
  return top + 1


# ---------------------------------------------------------------- the public functions
def _labels(z: zipfile.ZipFile, heads, path: Path):
  """(y_train, y_test, number of classes), the labels read and checked, no input read."""
  members = _members(z)
  y_tr, y_te = (_read_array(z, members[a], a, path) for a in ("y_train", "y_test"))
  stored = None
  if NUM_CLASSES in heads:
    stored = _read_array(z, members[NUM_CLASSES], NUM_CLASSES, path)
  return y_tr, y_te, _num_classes(y_tr, y_te, stored, path)


def npz_info(path) -> DatasetInfo:
  """Sizes, input dimension, image shape and classes of the npz dataset at `path`, from its
  `.npy` headers and its labels: the input arrays are not read (so their values, e.g. a
  NaN, are checked only when the file is loaded)."""
  path = Path(path)
  with _opened(path) as z:
    heads = _headers(z, path)
    layout = _layout(heads, path)
    num_classes = _labels(z, heads, path)[2]
  return DatasetInfo(layout.d_in, num_classes, layout.image_shape, layout.n_train,
                     layout.n_test, f"npz:{path}")


def _inputs(x: np.ndarray, name: str, path: Path) -> np.ndarray:
  """x (n, *sample_shape) -> float32 rows (n, d), C order; uint8 scaled to [0, 1]."""
  rows = x.reshape(len(x), -1)  # C index order whatever the memory order: HWC for images
  if x.dtype == np.uint8:
    rows = rows.astype(np.float32) / np.float32(255)
  else:
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
      rows = rows.astype(np.float32)
  finite = np.isfinite(rows)
  if not finite.all():
    bad = int(np.size(finite) - np.count_nonzero(finite))
    raise LmcError(f"Array {name} in npz dataset {path} holds {bad} values that are NaN or "
                   "infinite (or beyond float32's range); replace them before saving.")
  return rows


def load_npz(path) -> Dataset:
  """The dataset in the `.npz` file at `path`: x float32 `(n, d)`, y int32 `(n,)`, every
  array checked; `source` names the file and the start of its SHA-256."""
  path = Path(path)
  with _opened(path) as z:
    heads = _headers(z, path)
    layout = _layout(heads, path)
    y_tr, y_te, num_classes = _labels(z, heads, path)
    members = _members(z)
    x_tr, x_te = (_inputs(_read_array(z, members[a], a, path), a, path)
                  for a in ("x_train", "x_test"))
  source = f"{path.name} (sha256 {sha256_file(path)[:12]})"
  return Dataset(x_tr, y_tr.astype(np.int32), x_te, y_te.astype(np.int32), num_classes,
                 source=source, image_shape=layout.image_shape)
