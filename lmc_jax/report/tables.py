"""Tables of zoo and barrier results: found on disk, printed, and written as CSV."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lmc_jax import result_files
from lmc_jax.atomic_files import atomic_write_bytes
from lmc_jax.data.datasets import dataset_slug
from lmc_jax.errors import LmcError
from lmc_jax.lmc.measures import mean_std
from lmc_jax.records import METRIC_NAMES, ZooRecord
from lmc_jax.zoo.io import read_zoo_json
from lmc_jax.zoo.runs import find_zoos

# The columns of the zoo table `experiments.zoo` prints (its CSV has every key of a row).
ZOO_COLUMNS = ["width", "optimizer", "init", "models", "diverged", "collapsed", "train_loss",
               "test_loss", "train_acc", "test_acc"]


def zoo_row(record: ZooRecord) -> dict:
  """One table row of a zoo.json: mean +- std of each metric over the models that did not
  diverge.

  Collapsed models (at chance, `nn.evaluation.is_collapsed`) are counted and stay in the
  means, as they would in a study's table."""
  config = record.config
  ok = [record.models[k] for k in record.usable]
  row = {"dataset": config.data.dataset, "source": record.data_source,
         "optimizer": config.optim.optimizer, "init": config.model.init,
         "width": config.model.hidden[0],
         "hidden": "x".join(str(w) for w in config.model.hidden),
         "models": record.num_models, "diverged": len(record.diverged),
         "collapsed": len(record.collapsed)}
  for key in METRIC_NAMES:
    vals = [getattr(m, key) for m in ok]
    row[key] = mean_std(vals)
    row[key + "_mean"] = float(np.mean(vals)) if vals else float("nan")
    row[key + "_std"] = float(np.std(vals)) if vals else float("nan")
  return row


def format_table(rows: Sequence[dict], columns: Sequence[str],
                 headers: Sequence[str] = None) -> str:
  """Plain-text table with aligned columns; floats get 4 decimals."""
  headers = list(headers or columns)
  cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  body = [[cell(r[c]) for c in columns] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
            for i, h in enumerate(headers)]
  line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
  out = [line(headers), line(["-" * w for w in widths])] + [line(b) for b in body]
  return "\n".join(out)


def write_csv(path, rows: Iterable[dict]) -> Path:
  rows = list(rows)
  buf = io.StringIO()
  if rows:
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  atomic_write_bytes(Path(path), lambda f: f.write(buf.getvalue().encode()))
  return Path(path)


def write_zoo_summary(root, dataset: str) -> Path:
  """`<root>/<dataset>_zoo_summary.csv`: one `zoo_row` per zoo of `dataset` under `root`
  (one level down), sorted by optimizer, init and width. A zoo whose zoo.json is damaged
  is left out with a warning (it is another run's; this one's zoo is already saved)."""
  rows = []
  for d in find_zoos(root):
    try:
      rows.append(zoo_row(read_zoo_json(d)))
    except LmcError as e:
      logging.warning("left out of the zoo summary: %s", e)
  rows = sorted((r for r in rows if r["dataset"] == dataset),
                key=lambda r: (r["optimizer"], r["init"], r["width"]))
  return write_csv(Path(root) / result_files.zoo_summary_csv(dataset_slug(dataset)), rows)

