"""The alignment methods side by side: a table and a figure over the widths of a dataset.

`records` are experiments.barrier's per-zoo dicts (sorted by width) with `naive` and
`methods` (barrier.json's entries by name) and `reference`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from lmc_jax.report.figures import _save, plt

COMPARISON_COLUMNS = ["width", "method", "pairs", "q1", "median", "q3", "ref_median",
                      "other_median", "optimal", "excess_median", "seconds", "note"]
COMPARISON_HEADERS = ["width", "method", "pairs", "Q1", "median", "Q3", "ref", "other",
                      "optimal", "excess", "seconds", "note"]
TOLERANCE = 1e-6  # epsilon differences below this count as reaching the optimum


def _entry(record: dict, name: str):
  return record["naive"] if name == "naive" else record.get("methods", {}).get(name)


def reference_mask(entry: dict, reference: int) -> np.ndarray:
  pairs = np.asarray(entry["pairs"]).reshape(-1, 2)
  return (pairs == reference).any(1)


def comparison_rows(records: Sequence[dict], names: Sequence[str]) -> List[dict]:
  """One row per width and method (naive first): epsilon quartiles over all pairs, medians
  over pairs with and without the reference, alignment seconds, and against exact search
  (where it ran; methods without REPAIR) the share of reference pairs at the optimum and
  the median excess epsilon over it."""
  rows = []
  for r in records:
    exact = _entry(r, "exact")
    has_exact = exact is not None and "skipped" not in exact
    for name in ["naive"] + [n for n in names if n != "naive"]:
      e = _entry(r, name)
      row = {"width": r["width"], "method": name, "pairs": "-", "q1": "-", "median": "-",
             "q3": "-", "ref_median": "-", "other_median": "-", "optimal": "-",
             "excess_median": "-", "seconds": "-", "note": ""}
      base = _entry(r, name.split("+")[0]) if name != "naive+repair" else r["naive"]
      if e is None and base is not None and "skipped" in base:
        row["note"] = "skipped"
      elif e is None:
        row["note"] = "not computed"
      elif "skipped" in e:
        row["note"] = "skipped: " + e["skipped"].split(";")[0]
      else:
        eps = np.asarray(e["epsilon"], np.float64)
        ref = reference_mask(e, r["reference"])
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


DIAGNOSTIC_COLUMNS = ["width", "weight_cycle", "activation_cycle", "restart_spread_median",
                      "restart_spread_max", "moved_weight", "moved_activation", "moved_mergemany"]
DIAGNOSTIC_HEADERS = ["width", "cycle: weight", "cycle: activation", "restarts: eps spread median",
                      "eps spread max", "moved: weight", "moved: activation", "moved: mergemany"]


def diagnostics_rows(records: Sequence[dict]) -> List[dict]:
  """Per width: median cycle consistency of weight and activation matching over the
  triples, the spread of epsilon over weight matching's restarts, and the median share of
  units each method moves (models other than the reference)."""
  rows = []
  for r in records:
    d = r.get("diagnostics")
    if not d:
      continue
    row = {"width": r["width"],
           "weight_cycle": float(np.median(d["weight_cycle_consistency"])),
           "activation_cycle": float(np.median(d["activation_cycle_consistency"])),
           "restart_spread_median": d["weight_restarts"]["median_epsilon_spread"],
           "restart_spread_max": d["weight_restarts"]["max_epsilon_spread"]}
    for name in ("weight", "activation", "mergemany"):
      e = _entry(r, name)
      moved = [m for k, m in enumerate(e.get("fraction_moved", [])) if k != r["reference"]] \
          if e and "skipped" not in e else []
      row[f"moved_{name}"] = float(np.median(moved)) if moved else "-"
    rows.append(row)
  return rows


def comparison_figure(records: Sequence[dict], names: Sequence[str], dataset: str, path) -> Path:
  """Median epsilon against width per method, quartiles as error bars (log scale; naive in
  gray): without REPAIR, with REPAIR (when measured), and the seconds each method took."""
  widths = [r["width"] for r in records]
  base = [n for n in names if "+" not in n and n != "naive"]
  repaired = [n for n in names if n.endswith("+repair")]
  panels = [("", ["naive"] + base)] + ([("+repair", repaired)] if repaired else [])
  fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.2 * (len(panels) + 1), 4.6))
  colors = plt.get_cmap("tab10")
  color_of = lambda root: "0.45" if root == "naive" else colors(base.index(root) % 10)
  for ax, (suffix, members) in zip(axes, panels):
    for i, name in enumerate(members):
      root = name.split("+")[0]
      xs, med, err_lo, err_hi = [], [], [], []
      shift = 2 ** (0.07 * (i - (len(members) - 1) / 2))  # side by side at each width
      for w, r in zip(widths, records):
        e = _entry(r, name)
        if e is None or "skipped" in e:
          continue
        q1, q2, q3 = np.percentile(np.asarray(e["epsilon"], np.float64), [25, 50, 75])
        xs.append(w * shift)
        med.append(q2)
        err_lo.append(q2 - q1)
        err_hi.append(q3 - q2)
      if xs:
        ax.errorbar(xs, med, yerr=[err_lo, err_hi], fmt="-o", ms=3.5, lw=1.2, capsize=2,
                    color=color_of(root), label=root)
    ax.set_yscale("log")
    # Quartiles of 0 (flat lines, e.g. nets at chance) would pull the axis down to nothing:
    # start it a little below the smallest positive median; zeros are not drawn.
    positive = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), float) if y > 0]
    if positive:
      ax.set_ylim(bottom=min(positive) / 3)
    ax.set_ylabel("epsilon: median, bars Q1-Q3 (log; zeros not drawn)")
    ax.set_title(f"{dataset}: epsilon by method" + (" after REPAIR" if suffix else ""))
  for name in base:
    secs = [(w, _entry(r, name).get("seconds")) for w, r in zip(widths, records)
            if _entry(r, name) is not None and "skipped" not in _entry(r, name)]
    if secs:
      axes[-1].plot(*zip(*secs), "-o", ms=3.5, color=color_of(name), label=name)
  axes[-1].set_yscale("log")
  axes[-1].set_ylabel("seconds to align the zoo")
  axes[-1].set_title(f"{dataset}: time per method (this machine)")
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths)
    ax.set_xticklabels([str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("hidden width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return _save(fig, path)
