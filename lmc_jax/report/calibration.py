"""Temperature-calibrated curves beside the raw ones: a table row per zoo and a figure of
median epsilon against width, raw (solid) and calibrated (dashed), per set of curves.
`records` are `ZooBarriers` whose barrier.json holds calibrated curves."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import matplotlib
import numpy as np

from lmc_jax.report.figures import new_figure, save_figure, width_label

COLUMNS = ("width", "curves", "eps_raw", "eps_calibrated", "barrier_raw", "barrier_calibrated",
           "t_mid")
HEADERS = ("width", "curves", "eps raw", "eps calibrated", "barrier raw",
           "barrier calibrated", "T at 1/2")


def _median(values) -> float:
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return float(np.median(values)) if values.size else float("nan")


def calibration_rows(records: Sequence, names: Sequence[str]) -> List[dict]:
  """Per zoo and set of curves ('naive' and each method in `names`): median epsilon and
  loss barrier over pairs, raw and calibrated, and the median temperature at alpha 1/2."""
  rows = []
  for r in records:
    for name in ["naive"] + [n for n in names if n != "naive"]:
      raw, cal = r.curves(name), r.result.calibrated(name)
      if raw is None or cal is None:
        continue
      mid = int(np.argmin(np.abs(np.asarray(r.alphas) - 0.5)))
      rows.append({"width": r.width, "curves": name,
                   "eps_raw": _median(raw.epsilon), "eps_calibrated": _median(cal.curves.epsilon),
                   "barrier_raw": _median(raw.measure("barrier")),
                   "barrier_calibrated": _median(cal.curves.measure("barrier")),
                   "t_mid": _median(cal.temperature[:, mid])})
  return rows


def calibration_figure(records: Sequence, names: Sequence[str], path) -> Path:
  """Median epsilon against width (log2), raw solid and calibrated dashed, one colour per
  set of curves; beside it the median fitted temperature along the line at each width."""
  fig, axes = new_figure(1, 2, (10.4, 4.4))
  ax, ax_t = axes[0]
  colors = matplotlib.colormaps["tab10"]
  for k, name in enumerate(["naive"] + [n for n in names if n != "naive"]):
    mine = [r for r in records if r.curves(name) is not None and r.result.calibrated(name)]
    xs = [r.width for r in mine]
    ax.plot(xs, [_median(r.curves(name).epsilon) for r in mine], "o-", color=colors(k),
            label=f"{name} raw")
    ax.plot(xs, [_median(r.result.calibrated(name).curves.epsilon) for r in mine], "s--",
            color=colors(k), label=f"{name} calibrated")
  for k, r in enumerate(records):
    cal = r.result.calibrated("naive")
    if cal is not None:
      ax_t.plot(r.alphas, np.median(cal.temperature, axis=0), "o-",
                color=matplotlib.colormaps["viridis"](k / max(1, len(records) - 1)),
                label=f"width {r.width}")
  ax.set_xscale("log", base=2)
  ax.set_xlabel(width_label(records[0].config) if records else "width")
  ax.set_ylabel("median epsilon (test loss)")
  ax.axhline(0, color="0.7", lw=0.8)
  ax.legend(fontsize=7)
  ax.set_title("raw vs temperature-calibrated")
  ax_t.set_xlabel("alpha")
  ax_t.set_ylabel("median fitted temperature (naive lines)")
  ax_t.legend(fontsize=7)
  return save_figure(fig, path)
