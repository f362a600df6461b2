"""What a merged network is judged by, on the whole test split: joint accuracy and loss
(argmax over every logit), per-part accuracy (only the examples of a parent's classes,
argmax over those classes' logits: ZipIt!'s per-task accuracy) and the ensemble of the
parents (the mean of their logits), the ceiling merging is measured against."""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.host_arrays import to_device
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct

BATCH = 1024


class Scores(NamedTuple):
  """A network's scores: joint `loss` (nats) and `acc` over the whole split, and `parts`,
  the accuracy on each parent's classes."""
  loss: float
  acc: float
  parts: Tuple[float, ...]


@functools.lru_cache(maxsize=32)
def _logits_fn(module):
  return jax.jit(lambda tree, x: apply_eval(module, tree, x))


def predict_logits(module, variables, x) -> np.ndarray:
  """`(n, d_out)` float32 logits of one network on inputs `x` `(n, ...)`, in batches."""
  fn = _logits_fn(module)
  x = np.asarray(x)
  return np.concatenate([np.asarray(fn(variables, to_device(x[i:i + BATCH])))
                         for i in range(0, len(x), BATCH)])


def joint_loss_acc(logits, y) -> Tuple[float, float]:
  """(mean cross-entropy, accuracy) of `logits` `(n, d_out)` against labels `(n,)`: the
  argmax over every logit (a sigmoid for one logit)."""
  loss, correct = loss_and_correct(to_device(logits, jnp.float32), to_device(y))
  return float(np.mean(np.asarray(loss))), float(np.mean(np.asarray(correct)))


def part_accuracy(logits, y, classes: Sequence[int]) -> float:
  """Accuracy on the examples whose label is in `classes`, the prediction the argmax over
  those classes' logits only (NaN where no example has such a label)."""
  logits, y = np.asarray(logits), np.asarray(y)
  classes = np.asarray(sorted(classes), np.int64)
  mask = np.isin(y, classes)
  if not mask.any():
    return float("nan")
  if len(classes) == 1:  # the argmax over one class's logit
    return 1.0
  if logits.shape[1] == 1:  # one sigmoid logit: two classes
    pred = (logits[mask, 0] > 0).astype(np.int64)
  else:
    pred = classes[np.argmax(logits[mask][:, classes], axis=1)]
  return float(np.mean(pred == y[mask]))


def scores(logits, y, parts: Sequence[Sequence[int]]) -> Scores:
  """The `Scores` of `logits` on labels `y`, with each of `parts`' classes."""
  loss, acc = joint_loss_acc(logits, y)
  return Scores(loss, acc, tuple(part_accuracy(logits, y, p) for p in parts))


def ensemble_logits(logits: Sequence[np.ndarray]) -> np.ndarray:
  """The mean of the parents' logits `(n, d_out)` each."""
  return np.mean(np.stack([np.asarray(v, np.float64) for v in logits]), 0).astype(np.float32)
