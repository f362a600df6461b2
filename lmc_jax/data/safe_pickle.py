"""Unpickling that admits numpy arrays and nothing else.

A pickle can name any importable callable and have it run while loading; data fetched
from outside must never get that power. `load_arrays` allows exactly the globals a
pickled numpy array needs and refuses every other with a clear error.
"""
from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from lmc_jax.errors import LmcError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 protocol-2 pickles spell an array's raw bytes as _codecs.encode(text,
    # 'latin1'): a pure text-to-bytes conversion, harmless to admit.
    ("_codecs", "encode"): codecs.encode,
}
# ... and an empty array's bytes as bytes(): admitted with no arguments only, since
# bytes(n) would allocate n bytes.
_BYTES = {("__builtin__", "bytes"), ("builtins", "bytes")}


class _ArraysOnly(pickle.Unpickler):
  def __init__(self, file, source: str):
    super().__init__(file, encoding="latin1")  # Python 2 pickles of numpy arrays need latin1
    self.source = source

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if (module, name) in _BYTES:
      return self._empty_bytes
    raise LmcError(f"{self.source} asks to load {module}.{name}, which is not a numpy array; "
                   "refusing to unpickle it (use a trusted copy of the data).")

  def _empty_bytes(self, *args):
    if args:
      raise LmcError(f"{self.source} calls bytes() with arguments, which no pickled numpy "
                     "array does; refusing to unpickle it (use a trusted copy of the data).")
    return b""


def load_arrays(data: bytes, source: str = "the pickle"):
  """Unpickles `data`, allowing numpy arrays (in any tuples, lists, dicts) only."""
  try:
    return _ArraysOnly(io.BytesIO(data), source).load()
  except LmcError:
    raise
  except Exception as e:  # a truncated or garbled pickle fails in many ways
    raise LmcError(f"{source} is not a readable pickle ({type(e).__name__}: {e}); "
                   "fetch the data again.") from None
