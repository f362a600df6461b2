"""Training checkpoints: a zoo's whole training state, so a killed run resumes where it was.

`checkpoint.npz` in the zoo directory holds one array per leaf of the state (the stacked
params and optimizer state, every model's mean loss per epoch so far, the test
evaluations so far) in tree order, and `meta`: a JSON document (`records.CheckpointMeta`:
format, config, epochs done, models trained, the leaves' SHA-256) stored as uint8. It is
written atomically, and removed with the directory it sits in when the finished zoo is
swapped in.

Resuming continues with the same epoch keys, so a resumed zoo is the zoo an uninterrupted
run writes, bit for bit on one machine. A checkpoint that does not fit the run (another
config, another number of models or devices, damaged bytes) is ignored with a warning,
training starts from epoch 0, and the next checkpoint replaces it.
"""
from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_npz, sha256_bytes
from lmc_jax.config import ZooConfig
from lmc_jax.crash_points import crash_point
from lmc_jax.errors import LmcError
from lmc_jax.records import CheckpointMeta
from lmc_jax.result_files import CHECKPOINT_NPZ


class TrainState(NamedTuple):
  """Where training stands after `epoch` epochs (models on axis 0 of every array; `R` the
  models trained, padding included)."""
  epoch: int
  params: dict
  opt_state: object
  train_loss: np.ndarray  # (epoch, R)
  eval_epoch: np.ndarray  # (K,) epochs after which the test split was evaluated
  test_loss: np.ndarray  # (K, N)
  test_acc: np.ndarray  # (K, N)


_META = "meta"  # the npz member holding the meta document


def _leaves(state: TrainState):
  return jax.tree_util.tree_leaves((state.params, state.opt_state)) + [
      state.train_loss, state.eval_epoch, state.test_loss, state.test_acc]


class Checkpointer:
  """Saves the training state of `config` to `directory/checkpoint.npz` at most every
  `every_seconds` (0: never by time) and every `every_epochs` epochs (0: never by count);
  never after the last epoch, when the zoo itself is written."""

  def __init__(self, directory, config: ZooConfig, every_epochs: int = 0,
               every_seconds: float = 600.0, clock=time.monotonic, write: bool = True):
    self.path = Path(directory) / CHECKPOINT_NPZ
    self.config, self.every_epochs, self.every_seconds = config, every_epochs, every_seconds
    self.clock, self.write = clock, write
    self.last = clock()

  def due(self, epochs_done: int) -> bool:
    if epochs_done >= self.config.train.epochs:
      return False
    by_count = self.every_epochs > 0 and epochs_done % self.every_epochs == 0
    by_time = self.every_seconds > 0 and self.clock() - self.last >= self.every_seconds
    return by_count or by_time

  def save(self, state: TrainState) -> None:
    """Writes `state` (host arrays) whole or not at all; on several processes only the
    first writes."""
    self.last = self.clock()
    if not self.write:
      return
    leaves = [np.asarray(leaf) for leaf in _leaves(state)]
    meta = CheckpointMeta(self.config, int(state.epoch), int(state.train_loss.shape[1]),
                          len(leaves), sha256_bytes(*leaves))
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays[_META] = np.frombuffer(json.dumps(meta.to_json()).encode(), np.uint8)
    atomic_write_npz(self.path, arrays)
    crash_point("zoo:checkpoint")

  def restore(self, template: TrainState) -> Optional[TrainState]:
    """The saved state if it belongs to this run (its structure and shapes are those of
    `template`, the fresh state at epoch 0), else None."""
    if not self.path.is_file():
      return None
    try:
      with np.load(self.path, allow_pickle=False) as f:
        meta = CheckpointMeta.from_json(json.loads(bytes(f[_META]).decode()), self.path)
        leaves = [f[f"leaf_{i:05d}"] for i in range(meta.leaves)]
    except LmcError as e:  # a meta document that is not what this version writes
      return self._unusable(f"it cannot be read ({getattr(e, 'what', e)})")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as e:
      return self._unusable(f"it cannot be read ({e})")
    if meta.config != self.config:
      return self._unusable("it was written for another config")
    if sha256_bytes(*leaves) != meta.sha256:
      return self._unusable("its bytes do not match its checksum")
    epoch = meta.epoch
    models = int(template.train_loss.shape[1])
    tree_leaves, treedef = jax.tree_util.tree_flatten((template.params, template.opt_state))
    if (len(leaves) != len(tree_leaves) + 4 or meta.models != models
        or not 0 < epoch < self.config.train.epochs):
      return self._unusable("it holds another number of models or leaves (another device "
                            "count?)")
    for got, want in zip(leaves, tree_leaves):
      if got.shape != tuple(want.shape) or got.dtype != np.dtype(want.dtype):
        return self._unusable(f"a leaf of shape {got.shape} {got.dtype} stands where the model "
                              f"has {tuple(want.shape)} {np.dtype(want.dtype)}")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, leaves[:len(tree_leaves)])
    train_loss, eval_epoch, test_loss, test_acc = leaves[len(tree_leaves):]
    if train_loss.shape != (epoch, models):
      return self._unusable(f"its loss history has shape {train_loss.shape}, not "
                            f"{(epoch, models)}")
    return TrainState(epoch, params, opt_state, train_loss, eval_epoch, test_loss, test_acc)

  def _unusable(self, why: str) -> None:
    logging.warning("%s is not used: %s; training starts from epoch 0.", self.path, why)
    return None

  def remove(self) -> None:
    self.path.unlink(missing_ok=True)
