"""Reading a dataset the user already prepared with tensorflow-datasets (optional extra:
`pip install .[tfds]`, which brings tensorflow-datasets and the TensorFlow its reader
needs). Nothing is downloaded: `download=False`."""
from __future__ import annotations

import os

import numpy as np

from lmc_jax.data.checks import check_images, check_labels, check_pair
from lmc_jax.errors import LmcError


def load_tfds_arrays(name: str, data_dir: str):
  """uint8 images (n, h, w, c) and int labels (n,) for the train and test splits of TFDS
  dataset `name` prepared under `data_dir`: (x_train, y_train, x_test, y_test)."""
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise LmcError("Reading a TFDS dataset needs tensorflow-datasets and TensorFlow; install "
                   "them with `pip install .[tfds]` (or `pip install tensorflow-datasets "
                   "tensorflow`).") from None
  try:
    import tensorflow  # noqa: F401  (tfds.load reads the prepared records through it)
  except ImportError:
    raise LmcError("tensorflow-datasets is installed but TensorFlow is not, and TFDS reads "
                   "prepared datasets through it; install it with `pip install tensorflow` "
                   "(or `pip install .[tfds]`).") from None
  try:
    splits = tfds.load(name, split=["train", "test"], data_dir=data_dir, batch_size=-1,
                       as_supervised=True, download=False)
  except Exception as e:  # TFDS raises several types for a missing or unprepared dataset
    raise LmcError(f"TFDS could not load {name!r} from {data_dir} ({type(e).__name__}: {e}); "
                   f"prepare it there with tfds first, or pass another --source.") from None
  (x_tr, y_tr), (x_te, y_te) = tfds.as_numpy(splits)
  out = []
  for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or y.dtype.kind not in "ui":
      raise LmcError(f"TFDS {name!r} in {data_dir} gives {split} images of dtype {x.dtype} and "
                     f"labels of dtype {y.dtype}, not uint8 pixels and integer labels; prepare "
                     "it again with tfds, or pass another --source.")
    out += [x, y.astype(np.int64)]
  return tuple(out)


# ------------------------------------------------------- any TFDS dataset: `tfds:NAME`
TFDS_PREFIX = "tfds:"
# TFDS's data directory for `tfds:NAME` where a caller passes none: the entry points set it
# from their --data_dir (`use_data_dir`); TFDS's own TFDS_DATA_DIR otherwise, then "data".
_DATA_DIR = {"dir": None}


def use_data_dir(data_dir) -> None:
  """Makes `data_dir` TFDS's data directory for `tfds:NAME` datasets in this process."""
  _DATA_DIR["dir"] = None if data_dir is None else str(data_dir)


def tfds_data_dir(data_dir=None) -> str:
  return str(data_dir or _DATA_DIR["dir"] or os.environ.get("TFDS_DATA_DIR") or "data")


def is_tfds(name) -> bool:
  """Whether `name` names a TFDS dataset (`tfds:NAME`)."""
  return isinstance(name, str) and name.startswith(TFDS_PREFIX)


def tfds_name(name: str) -> str:
  rest = name[len(TFDS_PREFIX):]
  if not rest.strip():
    raise LmcError(f"Dataset {name!r} names no TFDS dataset; write tfds:NAME, e.g. "
                   "tfds:fashion_mnist, prepared with tfds under --data_dir.")
  return rest


def _modules():
  try:
    import tensorflow  # noqa: F401
    import tensorflow_datasets as tfds
  except ImportError:
    raise LmcError("A tfds:NAME dataset is read through tensorflow-datasets and TensorFlow; "
                   "install them with `pip install .[tfds]`.") from None
  return tfds


_INFOS: dict = {}


def tfds_info(name: str, data_dir=None):
  """(image shape (H, W, C), classes, train size, test size) of TFDS dataset `name`
  prepared under `data_dir`, read from its info on disk (no arrays, nothing downloaded); a
  dataset that is not image classification with train and test splits is refused."""
  data_dir = tfds_data_dir(data_dir)
  key = (name, os.path.abspath(data_dir))
  if key not in _INFOS:
    tfds = _modules()
    fix = (f"prepare it under {data_dir} with tfds (tfds build {name} --data_dir={data_dir}), "
           "or pass the --data_dir that holds it")
    try:
      info = tfds.builder(name, data_dir=data_dir).info
    except Exception as e:  # TFDS raises several types for an unknown or missing dataset
      raise LmcError(f"TFDS dataset {name!r} is not prepared in {data_dir} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); {fix}.") from None
    feats = info.features
    image = feats["image"] if "image" in feats else None
    label = feats["label"] if "label" in feats else None
    shape = tuple(getattr(image, "shape", ()) or ())
    if image is None or label is None or len(shape) != 3 or None in shape or \
        not getattr(label, "num_classes", None):
      raise LmcError(f"TFDS dataset {name!r} is not image classification with images of a fixed "
                     "(height, width, channels) shape and class labels (features 'image' and "
                     "'label'); pass such a dataset as tfds:NAME.")
    missing = [s for s in ("train", "test") if s not in info.splits]
    if missing:
      raise LmcError(f"TFDS dataset {name!r} has no {' or '.join(missing)} split (it has "
                     f"{', '.join(info.splits)}); pass a dataset with train and test splits.")
    if not (info.splits["train"].num_examples and info.splits["test"].num_examples):
      raise LmcError(f"TFDS dataset {name!r} in {data_dir} has an empty train or test split; "
                     f"{fix}.")
    _INFOS[key] = (tuple(int(v) for v in shape), int(label.num_classes),
                   int(info.splits["train"].num_examples), int(info.splits["test"].num_examples))
  return _INFOS[key]


def standardise(x_train: np.ndarray, x_test: np.ndarray):
  """uint8 images -> float32 rows `(n, H*W*C)`: x / 255, then per channel minus the training
  split's mean over its std (std 1 where a channel is constant)."""
  def unit(x):
    return x.astype(np.float32) / 255.0
  tr = unit(x_train)
  axes = tuple(range(tr.ndim - 1))
  mean = tr.mean(axis=axes)
  std = tr.std(axis=axes)
  std = np.where(std > 0, std, 1.0).astype(np.float32)
  return [((unit(x) - mean) / std).reshape(len(x), -1).astype(np.float32)
          for x in (x_train, x_test)]


def load_tfds_dataset(name: str, data_dir=None):
  """(x_train, y_train, x_test, y_test, classes, image shape) of TFDS dataset `name`
  prepared under `data_dir`: images standardised (`standardise`) as float32 rows, labels
  int32, each split checked against the dataset's info (shape, classes, one label per
  image)."""
  data_dir = tfds_data_dir(data_dir)
  shape, classes, _, _ = tfds_info(name, data_dir)
  x_tr, y_tr, x_te, y_te = load_tfds_arrays(name, data_dir)
  fix = f"prepare tfds:{name} in {data_dir} again with tfds"
  for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
    what = f"TFDS {name!r} {split}"
    check_images(x, shape, f"{what} images", fix)
    check_labels(y, f"{what} labels", fix, classes)
    check_pair(x, y, f"{what} images", f"{what} labels", fix)
  x_tr_f, x_te_f = standardise(x_tr, x_te)
  return x_tr_f, y_tr.astype(np.int32), x_te_f, y_te.astype(np.int32), classes, shape
