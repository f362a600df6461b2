"""The study's figures: epsilon against width, loss curves, clustered epsilon matrices,
loss planes, SWA and grouped matrices. Each function writes one PNG and returns its path.

Zoo figures take `ZooBarriers` records (analysis.barrier) sorted by width. Figures are
built with matplotlib's object API (`Figure`), so nothing here touches pyplot's global
state or the backend a notebook has chosen.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lmc_jax.atomic_files import atomic_write_bytes
from lmc_jax.lmc.measures import pair_matrix, single_linkage_order
from lmc_jax.nn import architectures

NAIVE_COLOR, ALIGNED_COLOR = "#4C72B0", "#DD8452"


def new_figure(rows: int = 1, cols: int = 1, figsize=(6.4, 4.8), **subplots):
  """(figure, axes array `(rows, cols)`), independent of pyplot."""
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(rows, cols, squeeze=False, **subplots)


def panel_grid(n: int, size=3.0):
  """A figure of `n` square panels, at most 3 a row; returns (figure, the n axes)."""
  cols = min(n, 3)
  rows = math.ceil(n / cols)
  fig, axes = new_figure(rows, cols, (size * cols + 0.6, size * rows))
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, axes.flat[:n]


def save_figure(fig, path) -> Path:
  """Writes `fig` as a PNG at `path`, whole or not at all."""
  path = Path(path)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  data = buf.getvalue()
  atomic_write_bytes(path, lambda f: f.write(data), need=len(data))
  return path


def finite_values(values):
  """(the finite values of `values`, flattened, as float64; how many were left out). A
  null read back from JSON (where NaN and infinities are written as null) counts as
  non-finite."""
  v = np.asarray(values, np.float64).ravel()
  keep = np.isfinite(v)
  return v[keep], int((~keep).sum())


def bulk_limits(values, reach: float = 100.0):
  """(lo, hi, beyond): axis limits around the bulk of the finite `values` and how many of
  them fall outside. A value further from the median than `reach` times the median's size
  (or its absolute deviation, if larger) is an outlier, e.g. a loss of 1e30 among losses
  near 0.1, and is left off the axes rather than squashing the rest flat; up to half the
  values may be outliers."""
  v, _ = finite_values(values)
  if not v.size:
    return 0.0, 1.0, 0
  med = np.median(v)
  span = reach * max(float(np.median(np.abs(v - med))), abs(float(med)), 1e-12)
  inside = v[np.abs(v - med) <= span]
  lo, hi = float(inside.min()), float(inside.max())
  pad = 0.05 * max(hi - lo, 1e-6)
  return lo - pad, hi + pad, int(v.size - inside.size)


def left_out(non_finite: int = 0, beyond: int = 0, what: str = "values") -> str:
  """'3 non-finite values not drawn, 1 beyond the axes', or '' when nothing was left out."""
  parts = ([f"{non_finite} non-finite {what} not drawn"] if non_finite else []) + \
      ([f"{beyond} beyond the axes"] if beyond else [])
  return ", ".join(parts)


class CurvePanel(NamedTuple):
  """One panel of `loss_curves`: every line's loss at each alpha."""
  title: str
  alphas: np.ndarray  # (A,)
  loss: np.ndarray  # (P, A)


def label_log_decades(axis) -> None:
  """Labels at 1, 2 and 5 of each decade on a log `axis` (`ax.yaxis`): a decade's power
  alone leaves an axis spanning less than two decades with one label or none."""
  axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
  axis.set_minor_formatter(NullFormatter())


def width_label(config) -> str:
  """x-axis label of a width study of the zoos of `config` (`nn.architectures.width_label`)."""
  return architectures.width_label(config.model)


def barrier_vs_width(records, dataset: str, path) -> Path:
  """Git Re-Basin's width figure: the loss barrier (max over alpha of L(alpha) minus the
  line between the endpoints' losses) against width, naive, after weight matching and after
  every other alignment method measured on every zoo (not their REPAIR variants); median
  over pairs with the interquartile range as error bars."""
  widths = np.asarray([r.width for r in records], float)
  fig, axes = new_figure(1, 1, (6.5, 4.5))
  ax = axes[0][0]
  others = [n for n in records[0].result.method_names
            if n != "weight" and all(r.curves(n) is not None for r in records)]
  if others:
    fig.set_size_inches(8.6, 4.5)
  series = [("naive", NAIVE_COLOR, "naive"),
            ("aligned", ALIGNED_COLOR, f"weight matching to model {records[0].reference}")]
  colors = matplotlib.colormaps["tab10"]
  series += [(n, colors((k + 2) % 10), n) for k, n in enumerate(others)]
  dropped = 0
  for k, (which, color, label) in enumerate(series):
    vals = [finite_values(r.curves(which).measure("barrier")) for r in records]
    dropped += sum(n for _, n in vals)
    q = np.asarray([np.percentile(v, [25, 50, 75]) if v.size else [np.nan] * 3 for v, _ in vals])
    # Side by side (a few % apart on the log axis), so the sets of bars never overlap.
    dodge = 2 ** (0.05 * (k - (len(series) - 1) / 2))
    ax.errorbar(widths * dodge, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]],
                color=color, marker="o", capsize=4, label=label)
  ax.set_xscale("log", base=2)
  ax.set_xticks(widths)
  ax.set_xticklabels([str(r.width) for r in records])
  ax.minorticks_off()
  ax.set_xlabel(width_label(records[0].config))
  ax.set_ylabel(f"{records[0].result.split} loss barrier (nats)")
  ax.axhline(0, color="gray", lw=0.8, ls=":")
  ax.grid(alpha=0.3)
  if len(series) > 2:  # beside the axes: with several methods it would cover their bars
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  else:
    ax.legend()
  pairs = len(records[0].curves("naive").pairs)
  note = left_out(dropped, what="barriers")
  ax.set_title(f"{dataset}: loss barrier against width\n(median and quartiles over "
               f"{pairs} pairs per width{'; ' + note if note else ''})")
  return save_figure(fig, path)


def epsilon_vs_width(records, dataset: str, path) -> Path:
  """Fig 4.1 (naive), 4.4 (aligned) and 4.5 (both, box plots) in one row."""
  x = np.log2([r.width for r in records])
  finite = lambda v: v[np.isfinite(v)] if np.isfinite(v).any() else np.zeros(1) * np.nan
  naive = [finite(r.curves("naive").epsilon) for r in records]
  aligned = [finite(r.curves("aligned").epsilon) for r in records]
  dropped = sum(int((~np.isfinite(r.curves(w).epsilon)).sum())
                for r in records for w in ("naive", "aligned"))
  fig, axes = new_figure(1, 3, (16, 4.2))
  axes = axes[0]
  for ax, data, color, title in ((axes[0], naive, NAIVE_COLOR, "naive interpolation"),
                                 (axes[1], aligned, ALIGNED_COLOR,
                                  f"after weight matching to model {records[0].reference}")):
    parts = ax.violinplot(data, positions=x, widths=0.7, showmedians=True, showextrema=True)
    for body in parts["bodies"]:
      body.set_facecolor(color)
      body.set_alpha(0.6)
    ax.set_title(f"epsilon, {title}")
  w = 0.35
  bp_n = axes[2].boxplot(naive, positions=x - w / 2, widths=w * 0.9, showfliers=False,
                         patch_artist=True)
  bp_a = axes[2].boxplot(aligned, positions=x + w / 2, widths=w * 0.9, showfliers=False,
                         patch_artist=True)
  for bp, color in ((bp_n, NAIVE_COLOR), (bp_a, ALIGNED_COLOR)):
    for box in bp["boxes"]:
      box.set_facecolor(color)
    for med in bp["medians"]:
      med.set_color("black")
  axes[2].legend([bp_n["boxes"][0], bp_a["boxes"][0]], ["naive", "aligned"], loc="upper right")
  axes[2].set_title("naive vs aligned (outliers omitted)")
  fig.suptitle(f"{dataset}: epsilon against width" + (
      f" ({dropped} non-finite values not drawn)" if dropped else ""), y=1.04)
  for ax in axes:
    ax.set_xticks(x)
    ax.set_xticklabels([str(r.width) for r in records])
    ax.set_xlim(x.min() - 0.6, x.max() + 0.6)
    ax.set_xlabel(width_label(records[0].config))
    ax.set_ylabel("epsilon = max L(alpha) - max(L_i, L_j)")
    ax.axhline(0, color="gray", lw=0.8, ls=":")
    ax.grid(axis="y", alpha=0.3)
  return save_figure(fig, path)


def loss_curves(panels: Sequence[CurvePanel], title: str, path, split: str = "test") -> Path:
  """Fig 4.2/4.3: loss along the line for every pair, pointwise median and quartiles; one
  panel per `CurvePanel`, `title` above them."""
  fig, axes = panel_grid(len(panels))
  for ax, panel in zip(axes, panels):
    alphas = np.asarray(panel.alphas)
    loss = np.asarray(panel.loss, float)
    finite = np.isfinite(loss).all(axis=1)
    dropped = f";\n{int((~finite).sum())} with non-finite losses not drawn" \
        if not finite.all() else ""
    loss = loss[finite]
    if not len(loss):
      ax.set_title(f"{panel.title} (no pair with finite losses)")
      continue
    ax.plot(alphas, loss.T, color="gray", lw=0.5, alpha=max(0.02, min(0.4, 20 / len(loss))))
    q1, med, q3 = np.percentile(loss, [25, 50, 75], axis=0)
    ax.plot(alphas, med, color="red", lw=2, label="median")
    ax.plot(alphas, q1, color="red", lw=1, ls="--", label="Q1, Q3")
    ax.plot(alphas, q3, color="red", lw=1, ls="--")
    # Zoom so that the bulk of the curves is readable; a few outlying lines leave the axes
    # (and a line of huge losses, 1e30, is counted as leaving them).
    lo, hi = loss.min(), min(np.percentile(loss, 99), bulk_limits(loss)[1])
    pad = 0.05 * max(hi - lo, 1e-6)
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    beyond = int((loss.max(axis=1) > hi + pad).sum())
    if beyond:
      dropped += f";\n{beyond} leaving the axes"
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(f"{panel.title} ({len(loss)} pairs{dropped})")
    ax.set_xlabel("alpha (0: model i, 1: model j)")
    ax.set_ylabel(f"{split} loss")
    ax.grid(alpha=0.3)
  axes[0].legend(loc="upper right", fontsize=8)
  fig.suptitle(title, y=1.0)
  fig.tight_layout()
  return save_figure(fig, path)


def epsilon_matrices(records, dataset: str, which: str, path) -> Path:
  """Fig 4.6: pairwise epsilon of entry `which` (naive, aligned, a method), rows and
  columns ordered by single-linkage clustering, colour scale from 0 to the zoo's mean test
  loss, the reference model marked."""
  fig, axes = panel_grid(len(records), size=3.6)
  for ax, r in zip(axes, records):
    models, entry = list(r.models), r.curves(which)
    index = {m: k for k, m in enumerate(models)}
    pairs = np.asarray([[index[i], index[j]] for i, j in entry.pairs]).reshape(-1, 2)
    m = pair_matrix(entry.epsilon, pairs, len(models))
    order = single_linkage_order(m)
    vmax = max(r.mean_test_loss, 1e-6)
    im = ax.imshow(m[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=vmax,
                   interpolation="nearest")
    ref_pos = int(np.where(np.asarray(models)[order] == r.reference)[0][0]) \
        if r.reference in models else None
    if ref_pos is not None:
      ax.set_xticks([ref_pos])
      ax.set_yticks([ref_pos])
      ax.set_xticklabels([f"ref {r.reference}"], color="red", fontsize=8)
      ax.set_yticklabels([f"ref {r.reference}"], color="red", fontsize=8)
      ax.plot([ref_pos], [-1.2], marker="v", color="red", clip_on=False, ms=6)
      ax.plot([-1.2], [ref_pos], marker=">", color="red", clip_on=False, ms=6)
    else:
      ax.set_xticks([])
      ax.set_yticks([])
    # The edge markers sit outside the image; keep them from widening the axes.
    ax.set_xlim(-0.5, len(models) - 0.5)
    ax.set_ylim(len(models) - 0.5, -0.5)
    bad = int((~np.isfinite(entry.epsilon)).sum())
    ax.set_title(f"width {r.width}" + (f" ({bad} non-finite, blank or at the top)" if bad
                                       else ""))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.tick_params(labelsize=7)
  label = {"naive": "naive", "aligned": "after weight matching to the reference",
           "mergemany": "after MergeMany (all matched jointly to their mean)"}.get(which, which)
  fig.suptitle(f"{dataset}: pairwise epsilon, {label}; clustered (single linkage), "
               "colour max = mean test loss", y=1.0)
  fig.tight_layout()
  return save_figure(fig, path)


def loss_planes(grids, titles, suptitle: str, path, split: str = "test") -> Path:
  """Fig 1.1/1.2: loss over the plane through three networks, one panel per grid, with
  A, B and C marked; a shared logarithmic colour scale so panels compare. Non-finite grid
  points are left blank and counted in their panel's title."""
  finite = np.concatenate([finite_values(g.loss)[0] for g in grids])
  if finite.size:
    lo = max(float(finite.min()), 1e-4)
    hi = min(float(np.percentile(finite, 99)), bulk_limits(finite)[1])
  else:
    lo, hi = 1e-4, 1.0
  levels = np.geomspace(lo, max(hi, lo * 1.01), 16)
  fig, axes = new_figure(1, len(grids), (5.2 * len(grids) + 0.8, 4.6))
  cs = None
  for ax, g, title in zip(axes[0], grids, titles):
    loss = np.asarray(g.loss, np.float64)
    bad = int((~np.isfinite(loss)).sum())
    shown = np.ma.masked_invalid(np.where(np.isfinite(loss), np.clip(loss, lo, levels[-1]),
                                          np.nan))
    if bad < loss.size:
      cs = ax.contourf(g.xs, g.ys, shown, levels=levels, norm=LogNorm(), cmap="viridis_r")
      ax.contour(g.xs, g.ys, shown, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    for (cx, cy), name, corner_loss in zip(g.corners, "ABC", g.corner_loss):
      if not (np.isfinite(cx) and np.isfinite(cy)):
        continue
      ax.plot(cx, cy, "o", ms=8, mfc="white", mec="red", mew=2)
      ax.annotate(f"{name} ({corner_loss:.3f})", (cx, cy), xytext=(6, 6),
                  textcoords="offset points", color="red", fontsize=9, fontweight="bold")
    ax.set_aspect("equal")
    note = "no finite loss" if bad == loss.size else \
        f"{bad} non-finite points left blank" if bad else ""
    ax.set_title(title + (f"\n({note})" if note else ""))
    ax.set_xlabel("along B - A (parameter distance)")
    ax.set_ylabel("along C - A, orthogonal part")
  if cs is not None:
    cb = fig.colorbar(cs, ax=list(axes[0]), fraction=0.03, pad=0.02, ticks=levels[::3])
    cb.ax.set_yticklabels([f"{v:.3g}" for v in levels[::3]])
    cb.ax.minorticks_off()
    cb.set_label(f"{split} loss (log scale)")
  fig.suptitle(suptitle)
  return save_figure(fig, path)


def swa_losses(records, dataset: str, path) -> Path:
  """Fig 4.7: test loss of each SWA sample and of the running average, per epoch; the
  model SWA started from as a dashed line. `records`: `SwaResult`s (analysis.swa). Non-finite
  losses are not drawn and huge ones are left off the axes; each panel counts both."""
  fig, axes = panel_grid(len(records), size=3.2)
  for ax, r in zip(axes, records):
    sample, average = r.swa.sample_loss, r.swa.average_loss
    start = np.asarray([r.swa.start_loss], np.float64)
    every = np.concatenate([sample, average, start])
    _, bad = finite_values(every)
    lo, hi, beyond = bulk_limits(every)
    e = np.arange(1, len(sample) + 1)
    ax.plot(e, np.where(np.isfinite(sample), sample, np.nan), "o", color=NAIVE_COLOR,
            label="sample")
    ax.plot(e, np.where(np.isfinite(average), average, np.nan), "-", color=ALIGNED_COLOR, lw=2,
            label="running average")
    if np.isfinite(start[0]):
      ax.axhline(start[0], color="gray", ls="--", lw=1, label="start")
    ax.set_ylim(lo, hi)
    note = left_out(bad, beyond, "losses")
    ax.set_title(f"width {r.width}" + (f"\n({note})" if note else ""), fontsize=10)
    ax.set_xlabel("SWA epoch")
    ax.set_ylabel("test loss")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{dataset}: SWA samples and their running average", y=1.0)
  fig.tight_layout()
  return save_figure(fig, path)


GROUP_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
                "#8C8C8C")


def grouped_matrices(panels, groups, labels, vmax: float, path, title: str) -> Path:
  """Fig 5.4-5.7/5.9: epsilon matrices of a grouped zoo, models ordered by group and by
  single-linkage clustering inside each group; a coloured band marks each group and a red
  triangle the reference. `panels`: [(title, (N, N) matrix, reference index or None)]."""
  groups = np.asarray(groups)
  fig, axes = panel_grid(len(panels), size=4.0)
  for ax, (name, m, ref) in zip(axes, panels):
    order = np.concatenate([np.where(groups == g)[0][single_linkage_order(
        m[np.ix_(groups == g, groups == g)])] for g in range(len(labels))])
    n = len(order)
    im = ax.imshow(m[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=vmax,
                   interpolation="nearest", extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    start = 0
    for g in range(len(labels)):
      size = int(np.sum(groups == g))
      color = GROUP_COLORS[g % len(GROUP_COLORS)]
      ax.add_patch(Rectangle((start - 0.5, -0.5 - 0.04 * n), size, 0.035 * n, color=color,
                             clip_on=False))
      ax.add_patch(Rectangle((-0.5 - 0.04 * n, start - 0.5), 0.035 * n, size, color=color,
                             clip_on=False))
      if start:
        ax.axhline(start - 0.5, color="white", lw=0.8)
        ax.axvline(start - 0.5, color="white", lw=0.8)
      start += size
    if ref is not None:
      pos = int(np.where(order == ref)[0][0])
      # just above the group band, below the title (which is padded clear of it)
      ax.plot([pos], [-0.5 - 0.065 * n], marker="v", color="red", ms=7, clip_on=False)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(name, fontsize=9, pad=28)
  fig.subplots_adjust(left=0.04, right=0.86, top=0.9, bottom=0.1, wspace=0.2, hspace=0.4)
  handles = [Rectangle((0, 0), 1, 1, color=GROUP_COLORS[g % len(GROUP_COLORS)])
             for g in range(len(labels))]
  fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9,
             bbox_to_anchor=(0.45, 0.0))
  fig.colorbar(im, cax=fig.add_axes([0.89, 0.3, 0.015, 0.4]), label="epsilon (test loss)")
  fig.suptitle(title)
  return save_figure(fig, path)


def training_history(panels, dataset: str, path) -> Path:
  """Training loss per epoch, median over the models and the band between the quartiles,
  one panel per `(title, history)` (`Zoo.history`); the test loss where it was recorded
  (`--eval_every`). Log scale: losses fall by orders of magnitude."""
  fig, axes = panel_grid(len(panels), size=3.2)
  for ax, (title, history) in zip(axes, panels):
    loss = np.asarray(history["train_loss"], np.float64)  # (E, N)
    epochs = np.arange(1, len(loss) + 1)
    q1, med, q3 = np.nanpercentile(loss, [25, 50, 75], axis=1)
    ax.fill_between(epochs, q1, q3, color=NAIVE_COLOR, alpha=0.3, lw=0, label="train, Q1-Q3")
    ax.plot(epochs, med, color=NAIVE_COLOR, lw=1.5, label="train, median",
            marker="o" if len(epochs) <= 20 else None, ms=3)  # a short run is a few points
    if "test_loss" in history:
      test = np.nanmedian(np.asarray(history["test_loss"], np.float64), axis=1)
      ax.plot(history["eval_epoch"], test, "o-", color=ALIGNED_COLOR, ms=3, lw=1,
              label="test, median")
    # A log axis where the loss spans a factor of 3 or more; over a narrow range (a zoo stuck
    # at chance) it would only repeat one rounded label.
    if np.all(np.isfinite(med)) and np.nanmin(q1) > 0 and np.nanmax(q3) / np.nanmin(q1) >= 3:
      ax.set_yscale("log")
      label_log_decades(ax.yaxis)
    ax.set_title(f"{title} ({loss.shape[1]} models)")
    ax.set_xlabel("epoch")
    if len(epochs) <= 10:
      ax.set_xticks(epochs)
    else:
      ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # 3-digit epochs fit
    ax.set_xlim(0.5, len(epochs) + 0.5)
    ax.set_ylabel("loss (mean over the epoch's batches)")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{dataset}: training loss per epoch,\nmedian and quartiles over each zoo's models",
               y=1.02, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)
