"""Reading a dataset the user already prepared with tensorflow-datasets (optional extra:
`pip install .[tfds]`, which brings tensorflow-datasets and the TensorFlow its reader
needs). Nothing is downloaded: `download=False`."""
from __future__ import annotations

import numpy as np

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
