"""The IDX format of the MNIST files (LeCun et al.), gzipped or not.

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian uint32; then the data, big-endian, row-major.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from lmc_jax.errors import LmcError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def parse_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
  """Array from the bytes of an IDX file (gzip-compressed bytes are detected)."""
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise LmcError(f"{source} is a damaged gzip file ({e}); fetch it again.") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
    raise LmcError(f"{source} is not an IDX file (bad magic number); fetch it again.")
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise LmcError(f"{source} is truncated inside its header; fetch it again.")
  shape = struct.unpack(f">{ndim}I", data[4:header])
  dtype = np.dtype(_TYPES[data[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - header != expected:
    raise LmcError(f"{source} holds {len(data) - header} data bytes but its header says "
                   f"{expected} (shape {shape}); the file is truncated or damaged, fetch it again.")
  return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
  path = Path(path)
  return parse_idx(path.read_bytes(), str(path))


def idx_bytes(array: np.ndarray) -> bytes:
  """IDX encoding of a uint8 or int8 array (what MNIST uses)."""
  array = np.ascontiguousarray(array)
  if array.dtype not in _CODES:
    raise LmcError(f"IDX writing supports uint8 and int8 arrays, got {array.dtype}.")
  header = (bytes([0, 0, _CODES[array.dtype], array.ndim])
            + struct.pack(f">{array.ndim}I", *array.shape))
  return header + array.tobytes()
