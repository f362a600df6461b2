"""The alignment methods side by side: table rows over the widths of a dataset.

`records` are `ZooBarriers` (analysis.barrier), sorted by width; each row reads one entry
of the zoo's `BarrierResult`: naive, a method, or either after REPAIR.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

TOLERANCE = 1e-6  # epsilon differences below this count as reaching the optimum


def row_names(methods: Sequence[str], repair: bool = False) -> List[Tuple[str, bool]]:
  """(entry, after REPAIR?) of every row in table order: naive and each of `methods`, then
  with `repair` each of them again after REPAIR."""
  names = ["naive"] + [n for n in methods if n != "naive"]
  return [(n, False) for n in names] + ([(n, True) for n in names] if repair else [])


def row_label(name: str, repaired: bool) -> str:
  """The `method` column of a row: the entry's name, `+repair` after REPAIR."""
  return f"{name}+repair" if repaired else name


def _found(result, name: str, repaired: bool):
  """(curves, seconds, note) of one row of a `BarrierResult`; the curves are None where
  the note says why."""
  method = result.method(name)
  if repaired:
    entry = result.repaired(name)
    if entry is None:
      skipped = method is not None and method.skipped is not None
      return None, None, "skipped" if skipped else "not computed"
    curves, why, seconds = entry.curves, entry.skipped, None
  elif name == "naive":
    curves, why, seconds = result.naive, None, None
  elif method is None:
    return None, None, "not computed"
  else:
    curves, why, seconds = method.curves, method.skipped, method.seconds
  if why is not None:
    return None, None, "skipped: " + why.split(";")[0]
  return curves, seconds, ""


def comparison_rows(records: Sequence, methods: Sequence[str], repair: bool = False) -> List[dict]:
  """One row per width and entry of `row_names(methods, repair)`: epsilon quartiles over
  all pairs, medians over pairs with and without the reference, alignment seconds, and
  against exact search (where it ran; methods without REPAIR) the share of reference pairs
  at the optimum and the median excess epsilon over it."""
  rows = []
  for r in records:
    exact = r.curves("exact")
    for name, repaired in row_names(methods, repair):
      row = {"width": r.width, "method": row_label(name, repaired), "pairs": "-", "q1": "-",
             "median": "-", "q3": "-", "ref_median": "-", "other_median": "-", "optimal": "-",
             "excess_median": "-", "seconds": "-", "note": ""}
      curves, seconds, row["note"] = _found(r.result, name, repaired)
      if curves is not None:
        eps = np.asarray(curves.epsilon, np.float64)
        ref = curves.involving(r.reference)
        q1, med, q3 = np.percentile(eps, [25, 50, 75])
        row.update(pairs=len(eps), q1=q1, median=med, q3=q3,
                   ref_median=float(np.median(eps[ref])) if ref.any() else "-",
                   other_median=float(np.median(eps[~ref])) if (~ref).any() else "-",
                   seconds="-" if seconds is None else seconds)
        if exact is not None and name != "naive" and not repaired:
          excess = eps[ref] - np.asarray(exact.epsilon, np.float64)[ref]
          row.update(optimal=f"{int(np.sum(excess <= TOLERANCE))}/{int(ref.sum())}",
                     excess_median=float(np.median(excess)))
      rows.append(row)
  return rows


def _median(values) -> float:
  """NaN, without numpy's warning, where there is nothing (a zoo of two models has no
  triple to test cycle consistency on)."""
  return float(np.median(values)) if len(values) else float("nan")


def diagnostics_rows(records: Sequence) -> List[dict]:
  """Per width: median cycle consistency of weight and activation matching over the
  triples, the spread of epsilon over weight matching's restarts, and the median share of
  units each method moves (models other than the reference)."""
  rows = []
  for r in records:
    d = r.diagnostics
    if d is None:
      continue
    row = {"width": r.width,
           "weight_cycle": _median(d.weight_cycle_consistency),
           "activation_cycle": _median(d.activation_cycle_consistency),
           "restart_spread_median": d.weight_restarts.median_epsilon_spread,
           "restart_spread_max": d.weight_restarts.max_epsilon_spread}
    for name in ("weight", "activation", "mergemany"):
      e = r.result.method(name)
      moved = [m for k, m in enumerate(e.fraction_moved) if k != r.reference] \
          if e is not None and e.skipped is None else []
      row[f"moved_{name}"] = float(np.median(moved)) if moved else "-"
    rows.append(row)
  return rows
