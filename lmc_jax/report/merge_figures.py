"""The figures of `experiments.merge`: joint accuracy along alpha per method (Git Re-Basin's
split-data figure) and a bar chart of joint and per-part accuracy per network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lmc_jax.merge_records import MergeResult


def accuracy_vs_alpha(result: MergeResult, path) -> Path:
  """Median joint test accuracy over pairings along alpha, quartiles shaded, per method;
  the ensemble's median as a dashed line."""
  fig = Figure(figsize=(6.4, 4.2))
  ax = fig.subplots()
  for name, e in result.methods.items():
    if np.all(np.isnan(e.curve_acc)):
      continue
    q1, med, q3 = np.nanpercentile(e.curve_acc, [25, 50, 75], axis=0)
    ax.plot(result.alphas, med, marker="o", ms=3, label=name)
    ax.fill_between(result.alphas, q1, q3, alpha=0.2)
  ax.axhline(np.median(result.ensemble_acc[:, 0]), ls="--", c="k", lw=1, label="ensemble")
  ends = [Path(z).name for z in result.zoos]
  ax.set_xlabel(f"alpha (0: model of {ends[0]}, 1: of {ends[-1]})")
  ax.set_ylabel("joint test accuracy")
  ax.set_title(f"merging {len(result.pairings)} pairing(s): median, quartiles", fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return Path(path)


def accuracy_bars(result: MergeResult, path) -> Path:
  """Joint and per-part accuracy (median over pairings, quartiles as error bars) of each
  parent, the ensemble and each merged network."""
  rows = [(f"parent {k}", result.parent_acc[k]) for k in range(len(result.zoos))]
  rows.append(("ensemble", result.ensemble_acc))
  rows += [(n, e.acc) for n, e in result.methods.items()]
  fig = bars_figure(rows, ["joint"] + [f"part {k}" for k in range(len(result.zoos))])
  fig.savefig(path, dpi=120, bbox_inches="tight")
  return Path(path)


def bars_figure(rows, labels) -> Figure:
  """The bar chart of `rows` `[(name, acc (P, len(labels)))]`: one group of bars per row,
  one bar per label (median over P, quartiles as error bars); the legend outside the axes,
  right of them, so that no bar is hidden however high it is."""
  fig = Figure(figsize=(max(6.4, 0.9 * len(rows) + 2), 4.2))
  ax = fig.subplots()
  width = 0.8 / len(labels)
  x = np.arange(len(rows))
  for j, label in enumerate(labels):
    q = np.array([np.nanpercentile(a[:, j], [25, 50, 75]) for _, a in rows])
    ax.bar(x + (j - (len(labels) - 1) / 2) * width, q[:, 1], width,
           yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], capsize=2, label=label)
  ax.set_xticks(x, [n for n, _ in rows], rotation=30, ha="right", fontsize=8)
  ax.set_xlim(-0.6, len(rows) - 0.4)
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
  ax.set_title("joint and per-part accuracy, median over pairings", fontsize=10)
  fig.tight_layout()
  return fig
