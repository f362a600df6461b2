"""Linear mode connectivity across the zoos of a study: zoos grouped into families (one
config but the width), and per family the epsilon table, the study's figures and, where
several alignment methods ran, their comparison. Tables are returned as rows and written
as CSV; the entry point prints them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence

from lmc_jax import result_files
from lmc_jax.analysis.barrier import ZooBarriers, pairs_with
from lmc_jax.analysis.comparison import comparison_rows, diagnostics_rows
from lmc_jax.barrier_records import BarrierResult
from lmc_jax.lmc.measures import quartiles
from lmc_jax.records import MEASURE_NAMES
from lmc_jax.report import figures, method_figures
from lmc_jax.report.tables import write_csv
from lmc_jax.zoo.runs import zoo_family

EPSILON_COLUMNS = ["width", "pairs", "collapsed_pairs", "naive_epsilon_q1", "naive_epsilon_median",
                   "naive_epsilon_q3", "aligned_epsilon_q1", "aligned_epsilon_median",
                   "aligned_epsilon_q3"]
EPSILON_HEADERS = ["width", "pairs", "with collapsed", "naive Q1", "naive median", "naive Q3",
                   "aligned Q1", "aligned median", "aligned Q3"]
COMPARISON_COLUMNS = ["width", "method", "pairs", "q1", "median", "q3", "ref_median",
                      "other_median", "optimal", "excess_median", "seconds", "note"]
COMPARISON_HEADERS = ["width", "method", "pairs", "Q1", "median", "Q3", "ref", "other",
                      "optimal", "excess", "seconds", "note"]
DIAGNOSTIC_COLUMNS = ["width", "weight_cycle", "activation_cycle", "restart_spread_median",
                      "restart_spread_max", "moved_weight", "moved_activation", "moved_mergemany"]
DIAGNOSTIC_HEADERS = ["width", "cycle: weight", "cycle: activation",
                      "restarts: eps spread median", "eps spread max", "moved: weight",
                      "moved: activation", "moved: mergemany"]


class FamilyReport(NamedTuple):
  """What one family of zoos produced."""
  label: str  # e.g. 'moons', 'cifar10_sgd': the prefix of its files
  dataset: str  # the name figures show ('CIFAR-10 (JPEG re-encode)' where so labelled)
  records: List[ZooBarriers]  # sorted by width
  epsilon_rows: List[dict]  # EPSILON_COLUMNS and the other measures' quartiles
  method_rows: List[dict]  # COMPARISON_COLUMNS; empty unless methods were compared
  diagnostic_rows: List[dict]  # DIAGNOSTIC_COLUMNS; empty without diagnostics
  paths: List[Path]  # every figure written


def epsilon_row(width: int, result: BarrierResult, collapsed=()) -> dict:
  """Quartiles of every measure (naive and aligned) of one zoo's barrier.json, and how many
  pairs involve a `collapsed` model (at chance accuracy: its curves say little)."""
  naive = result.curves("naive")
  row = {"width": width, "pairs": len(naive.pairs),
         "collapsed_pairs": pairs_with(naive.pairs, collapsed)}
  for which in ("naive", "aligned"):
    curves = result.curves(which)
    for measure in MEASURE_NAMES:
      q = quartiles(curves.measure(measure) if curves is not None else [])
      for k in ("q1", "median", "q3"):
        row[f"{which}_{measure}_{k}"] = q[k]
  return row


def _permuted(result: BarrierResult, name: str) -> bool:
  """Whether method `name` ran on the zoo and recorded its permutations."""
  entry = result.method(name)
  return entry is not None and bool(entry.perms)


def group_families(records: Sequence[ZooBarriers]) -> Dict[str, List[ZooBarriers]]:
  """Records by family label, each sorted by width. Zoos whose configs differ in more than
  the width form separate families; a second family with the same label (e.g. another lr)
  gets a numbered label, so its files do not overwrite the first's."""
  groups: Dict[str, List[ZooBarriers]] = {}
  for r in records:
    cfg = r.config.replace(hidden=(0,)).to_dict()
    groups.setdefault(json.dumps(cfg, sort_keys=True), []).append(r)
  out: Dict[str, List[ZooBarriers]] = {}
  for recs in groups.values():
    label = zoo_family(recs[0].config)
    if label in out:
      label = f"{label}_{len(out)}"
    out[label] = sorted(recs, key=lambda r: r.width)
  return out


def report_family(label: str, recs: List[ZooBarriers], fig_dir, methods: Sequence[str] = (),
                  repair: bool = False, split: str = "test") -> FamilyReport:
  """Writes the family's CSVs and figures into `fig_dir`; `methods` and `repair` say which
  method entries to compare (none beyond weight matching: no comparison)."""
  fig_dir = Path(fig_dir)
  dataset = recs[0].zoo.data_name
  rows = [epsilon_row(r.width, r.result, r.collapsed) for r in recs]
  write_csv(fig_dir / result_files.epsilon_summary_csv(label), rows)
  paths = [figures.epsilon_vs_width(recs, dataset,
                                    fig_dir / result_files.epsilon_vs_width_png(label)),
           figures.barrier_vs_width(recs, dataset,
                                    fig_dir / result_files.barrier_vs_width_png(label))]
  for which in ("naive", "aligned"):
    how = "naive interpolation" if which == "naive" else "after weight matching"
    panels = [figures.CurvePanel(f"width {r.width}", r.alphas, r.curves(which).loss)
              for r in recs]
    paths.append(figures.loss_curves(
        panels, f"{dataset}: {split} loss along the line between every pair, {how}",
        fig_dir / result_files.curves_png(label, which), split))
    paths.append(figures.epsilon_matrices(recs, dataset, which,
                                          fig_dir / result_files.epsilon_matrix_png(label, which)))
  method_rows: List[dict] = []
  compared = [m for m in methods if m != "weight"]
  if compared or repair:
    wanted = ["weight"] + compared
    method_rows = comparison_rows(recs, wanted, repair)
    write_csv(fig_dir / result_files.alignment_methods_csv(label), method_rows)
    paths.append(method_figures.comparison_figure(
        recs, wanted, repair, dataset, fig_dir / result_files.alignment_methods_png(label)))
    joint = [r for r in recs if _permuted(r.result, "mergemany")]
    if joint:  # Fig 4.6 without a favoured reference: does its band disappear?
      paths.append(figures.epsilon_matrices(
          joint, dataset, "mergemany",
          fig_dir / result_files.epsilon_matrix_png(label, "mergemany")))
  diag = diagnostics_rows(recs)
  if diag:
    write_csv(fig_dir / result_files.alignment_diagnostics_csv(label), diag)
  return FamilyReport(label, dataset, recs, rows, method_rows, diag, paths)
