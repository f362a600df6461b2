"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every result this project writes (zoos, barrier.json, reports, caches, fetched data) goes
through here, so a run killed mid-write never leaves half a file under the real name.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


def _json_safe(x):
  """NaN and infinities become null: JSON has no spelling for them."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, np.generic):
    return _json_safe(x.item())
  return x


def atomic_write_bytes(path: Path, write) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then renames it to `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    # mkstemp makes the file private (0600); give it the mode an ordinary open would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: Path, obj) -> None:
  text = json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n"
  atomic_write_bytes(path, lambda f: f.write(text.encode()))


def sha256_file(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


