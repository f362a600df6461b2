"""The alignment methods side by side: table rows over the widths of a dataset.

`records` are `ZooBarriers` (analysis.barrier), sorted by width; `record.curves(name)`
reads each method's entry of barrier.json.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

TOLERANCE = 1e-6  # epsilon differences below this count as reaching the optimum


def reference_mask(entry: dict, reference: int) -> np.ndarray:
  pairs = np.asarray(entry["pairs"]).reshape(-1, 2)
  return (pairs == reference).any(1)


def comparison_rows(records: Sequence, names: Sequence[str]) -> List[dict]:
  """One row per width and method (naive first): epsilon quartiles over all pairs, medians
  over pairs with and without the reference, alignment seconds, and against exact search
  (where it ran; methods without REPAIR) the share of reference pairs at the optimum and
  the median excess epsilon over it."""
  rows = []
  for r in records:
    exact = r.curves("exact")
    has_exact = exact is not None and "skipped" not in exact
    for name in ["naive"] + [n for n in names if n != "naive"]:
      e = r.curves(name)
      row = {"width": r.width, "method": name, "pairs": "-", "q1": "-", "median": "-",
             "q3": "-", "ref_median": "-", "other_median": "-", "optimal": "-",
             "excess_median": "-", "seconds": "-", "note": ""}
      base = r.curves(name.split("+")[0]) if name != "naive+repair" else r.curves("naive")
      if e is None and base is not None and "skipped" in base:
        row["note"] = "skipped"
      elif e is None:
        row["note"] = "not computed"
      elif "skipped" in e:
        row["note"] = "skipped: " + e["skipped"].split(";")[0]
      else:
        eps = np.asarray(e["epsilon"], np.float64)
        ref = reference_mask(e, r.reference)
        q1, med, q3 = np.percentile(eps, [25, 50, 75])
        row.update(pairs=len(eps), q1=q1, median=med, q3=q3,
                   ref_median=float(np.median(eps[ref])) if ref.any() else "-",
                   other_median=float(np.median(eps[~ref])) if (~ref).any() else "-",
                   seconds=e.get("seconds", "-"))
        if has_exact and name != "naive" and "+" not in name:
          best = np.asarray(exact["epsilon"], np.float64)[ref]
          excess = eps[ref] - best
          row.update(optimal=f"{int(np.sum(excess <= TOLERANCE))}/{int(ref.sum())}",
                     excess_median=float(np.median(excess)))
      rows.append(row)
  return rows




def diagnostics_rows(records: Sequence) -> List[dict]:
  """Per width: median cycle consistency of weight and activation matching over the
  triples, the spread of epsilon over weight matching's restarts, and the median share of
  units each method moves (models other than the reference)."""
  rows = []
  for r in records:
    d = r.diagnostics
    if not d:
      continue
    row = {"width": r.width,
           "weight_cycle": float(np.median(d["weight_cycle_consistency"])),
           "activation_cycle": float(np.median(d["activation_cycle_consistency"])),
           "restart_spread_median": d["weight_restarts"]["median_epsilon_spread"],
           "restart_spread_max": d["weight_restarts"]["max_epsilon_spread"]}
    for name in ("weight", "activation", "mergemany"):
      e = r.curves(name)
      moved = [m for k, m in enumerate(e.get("fraction_moved", [])) if k != r.reference] \
          if e and "skipped" not in e else []
      row[f"moved_{name}"] = float(np.median(moved)) if moved else "-"
    rows.append(row)
  return rows
