"""Training curves and barrier measures as TensorBoard event files (`--tensorboard=DIR`).

Written through tensorboardX, an optional extra (`pip install -e ".[tensorboard]"`). Each
zoo is one TensorBoard run, `DIR/<zoo directory name>`, rewritten whole each time (the event
files lmc_jax wrote there before are replaced, so a rerun shows each point once):

- from `experiments.zoo`, at step = epoch: "train_loss/median", "train_loss/q25",
  "train_loss/q75" over the zoo's models (models with a non-finite loss left out), and with
  `--eval_every` the same three of "test_loss" and "test_acc"; at step = the last epoch,
  "final/<metric>_mean" of each of the zoo's final metrics (`ModelMetrics`, finite only);
- from `experiments.barrier`, per method ("naive", then each alignment method) and measure
  of `lmc.measures.MEASURE_NAMES`: "barrier/<method>/<measure>/median", ".../q25",
  ".../q75" over the pairs at step 0, and "barrier_curve/<method>/loss_median" at step i
  (the i-th alpha): the median loss over the pairs along the line.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from lmc_jax.errors import LmcError

EXTRA_HINT = 'pip install -e ".[tensorboard]" (or pip install tensorboardX)'
ZOO_RUN = "zoo"  # sub-folders of a zoo's run: zoo curves and barrier measures apart
BARRIER_RUN = "barrier"


def require_writer(flag: str = "--tensorboard"):
  """tensorboardX's `SummaryWriter`, or an `LmcError` naming the extra that provides it."""
  try:
    from tensorboardX import SummaryWriter
  except ImportError:
    raise LmcError(f"{flag} needs tensorboardX, which is not installed; install the extra with "
                   f"{EXTRA_HINT}, or leave out {flag}.") from None
  return SummaryWriter


def quartiles(values) -> Optional[tuple]:
  """(q25, median, q75) of the finite entries of `values`, or None where none is finite."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return None
  q25, med, q75 = np.percentile(v, [25, 50, 75])
  return float(q25), float(med), float(q75)


def _fresh_run(root, zoo_name: str, part: str) -> Path:
  """`root/zoo_name/part`, emptied of the event files written there before."""
  run = Path(root) / zoo_name / part
  if run.is_dir():
    shutil.rmtree(run)
  run.mkdir(parents=True, exist_ok=True)
  return run


def _add_spread(writer, tag: str, values, step: int) -> None:
  q = quartiles(values)
  if q is not None:
    for name, v in zip(("q25", "median", "q75"), q):
      writer.add_scalar(f"{tag}/{name}", v, step)


def write_zoo_curves(root, zoo_name: str, history: Optional[dict], metrics) -> Path:
  """The zoo's run under `root`: per epoch the quartiles of `history`'s "train_loss"
  `(epochs, N)` (and "test_loss"/"test_acc" `(K, N)` at "eval_epoch" `(K,)`), and the mean of
  each final metric in `metrics` (`ModelMetrics` per model) at the last epoch."""
  writer_cls = require_writer()
  run = _fresh_run(root, zoo_name, ZOO_RUN)
  writer = writer_cls(logdir=str(run))
  try:
    last = 0
    if history is not None:
      train = np.asarray(history["train_loss"])
      for e, row in enumerate(train, start=1):
        _add_spread(writer, "train_loss", row, e)
      last = len(train)
      for e, k in enumerate(np.asarray(history.get("eval_epoch", []), np.int64)):
        for key in ("test_loss", "test_acc"):
          _add_spread(writer, key, np.asarray(history[key])[e], int(k))
    for field in ("train_loss", "train_acc", "test_loss", "test_acc"):
      v = np.asarray([getattr(m, field) for m in metrics], np.float64)
      v = v[np.isfinite(v)]
      if v.size:
        writer.add_scalar(f"final/{field}_mean", float(v.mean()), last)
  finally:
    writer.close()
  return run


def write_barrier_measures(root, zoo_name: str, result) -> Path:
  """The barrier run of zoo `zoo_name` under `root` from `result` (`BarrierResult`): the
  quartiles over pairs of every measure of every method that ran, and the median loss
  curve along the line."""
  writer_cls = require_writer()
  run = _fresh_run(root, zoo_name, BARRIER_RUN)
  writer = writer_cls(logdir=str(run))
  try:
    entries = [("naive", result.naive)] + [(m.name, m.curves) for m in result.methods
                                           if m.curves is not None]
    for name, curves in entries:
      for measure, values in curves.measures.items():
        _add_spread(writer, f"barrier/{name}/{measure}", values, 0)
      for i, column in enumerate(np.asarray(curves.loss).T):
        q = quartiles(column)
        if q is not None:
          writer.add_scalar(f"barrier_curve/{name}/loss_median", q[1], i)
  finally:
    writer.close()
  return run
