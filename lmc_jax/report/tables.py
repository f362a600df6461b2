"""Tables of zoo and barrier results: found on disk, printed, and written as CSV."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable, List, Sequence

import numpy as np

from lmc_jax.atomic_files import atomic_write_bytes
from lmc_jax.lmc.measures import quartiles
from lmc_jax.zoo.io import ZOO_JSON


def find_zoos(root) -> List[Path]:
  """`root` and its direct subdirectories that hold a zoo.json, sorted (deeper folders,
  such as another study's runs, are left alone)."""
  root = Path(root)
  if not root.exists():
    return []
  found = [p.parent for p in [root / ZOO_JSON, *root.glob(f"*/{ZOO_JSON}")] if p.is_file()]
  return sorted(found, key=lambda p: (str(p.parent), _width_key(p), p.name))


def _width_key(path: Path):
  try:
    return json.loads((path / ZOO_JSON).read_text())["config"]["hidden"][0]
  except (OSError, ValueError, KeyError, IndexError, TypeError):
    return 0


def mean_std(values) -> str:
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return "n/a"
  return f"{v.mean():.3f} +- {v.std():.3f}"


def zoo_row(doc: dict) -> dict:
  """One table row: mean +- std of each metric over the models that did not diverge."""
  models = doc["models"]
  ok = [m for m in models if not m.get("diverged")]
  row = {"dataset": doc["config"]["dataset"], "source": doc.get("data_source", ""),
         "optimizer": doc["config"]["optimizer"], "init": doc["config"]["init"],
         "width": doc["config"]["hidden"][0],
         "hidden": "x".join(str(w) for w in doc["config"]["hidden"]),
         "models": len(models), "diverged": len(models) - len(ok)}
  for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
    vals = [m[key] for m in ok]
    row[key] = mean_std(vals)
    row[key + "_mean"] = float(np.mean(vals)) if vals else float("nan")
    row[key + "_std"] = float(np.std(vals)) if vals else float("nan")
  return row


def epsilon_row(width: int, result: dict) -> dict:
  """Quartiles of epsilon (naive and aligned) of one zoo's barrier.json."""
  row = {"width": width, "pairs": len(result["naive"]["pairs"])}
  for which in ("naive", "aligned"):
    for measure in ("epsilon", "barrier", "rebasin_barrier"):
      q = quartiles(result[which][measure])
      for k in ("q1", "median", "q3"):
        row[f"{which}_{measure}_{k}"] = q[k]
  return row


def format_table(rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] = None) -> str:
  """Plain-text table with aligned columns; floats get 4 decimals."""
  headers = list(headers or columns)
  cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  body = [[cell(r[c]) for c in columns] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
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
