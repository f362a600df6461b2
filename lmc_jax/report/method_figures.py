"""The alignment methods side by side as a figure: median epsilon against width per method,
with and without REPAIR, and the seconds each took. `records` are `ZooBarriers`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np

from lmc_jax.report.figures import (
  finite_values,
  label_log_decades,
  left_out,
  new_figure,
  save_figure,
  width_label,
)


def comparison_figure(records: Sequence, methods: Sequence[str], repair: bool, dataset: str,
                      path) -> Path:
  """Median epsilon against width per method, quartiles as error bars (log scale; naive in
  gray): without REPAIR, with REPAIR (when `repair`), and the seconds each method took."""
  widths = [r.width for r in records]
  base = [n for n in methods if n != "naive"]
  panels = [False, True] if repair else [False]
  fig, axes = new_figure(1, len(panels) + 1, (5.2 * (len(panels) + 1), 4.6))
  axes = axes[0]
  colors = matplotlib.colormaps["tab10"]
  color_of = lambda name: "0.45" if name == "naive" else colors(base.index(name) % 10)
  members = ["naive"] + base
  for ax, repaired in zip(axes, panels):
    dropped = 0
    for i, name in enumerate(members):
      xs, med, err_lo, err_hi = [], [], [], []
      shift = 2 ** (0.07 * (i - (len(members) - 1) / 2))  # side by side at each width
      for w, r in zip(widths, records):
        curves = r.curves(name, repaired)
        if curves is None:
          continue
        eps, bad = finite_values(curves.epsilon)
        dropped += bad
        if not eps.size:
          continue
        q1, q2, q3 = np.percentile(eps, [25, 50, 75])
        xs.append(w * shift)
        med.append(q2)
        err_lo.append(q2 - q1)
        err_hi.append(q3 - q2)
      if xs:
        ax.errorbar(xs, med, yerr=[err_lo, err_hi], fmt="-o", ms=3.5, lw=1.2, capsize=2,
                    color=color_of(name), label=name)
    # Quartiles of 0 (flat lines, e.g. nets at chance) would pull a log axis down to
    # nothing: start it a little below the smallest positive median; zeros are not drawn.
    # With no positive median at all (every line flat) the axis stays linear.
    positive = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), float) if y > 0]
    if positive:
      ax.set_yscale("log")
      ax.set_ylim(bottom=min(positive) / 3)
      if max(positive) / min(positive) < 100:  # within two decades: label 1, 2 and 5 too
        label_log_decades(ax.yaxis)
      ax.set_ylabel("epsilon: median, bars Q1-Q3 (log; zeros not drawn)")
    else:
      ax.set_ylabel("epsilon: median, bars Q1-Q3 (every median is 0)")
    note = left_out(dropped, what="epsilons")
    ax.set_title(f"{dataset}: epsilon by method" + (" after REPAIR" if repaired else "")
                 + (f"\n({note})" if note else ""))
  for name in base:
    entries = [(w, r.result.method(name)) for w, r in zip(widths, records)]
    secs = [(w, e.seconds) for w, e in entries if e is not None and e.skipped is None]
    secs = [(w, t) for w, t in secs if isinstance(t, (int, float)) and np.isfinite(t) and t > 0]
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
    ax.set_xlabel(width_label(records[0].config))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  label_log_decades(axes[-1].yaxis)  # times often span less than one decade
  fig.tight_layout()
  return save_figure(fig, path)
