"""Figures of the study's section 5.1: decision boundaries with each hidden unit's line
(Fig 5.1), clustered cosine-similarity matrices of hidden units (Fig 5.2), and epsilon of
merged nets against width (Fig 5.3)."""
from __future__ import annotations

import numpy as np

from lmc_jax.analysis.unit_merging import cosine_similarity
from lmc_jax.lmc.measures import single_linkage_order
from lmc_jax.nn.models import OneHiddenLayer
from lmc_jax.report.figures import (
  ALIGNED_COLOR,
  NAIVE_COLOR,
  finite_values,
  left_out,
  new_figure,
  panel_grid,
  save_figure,
)


def _logit_fn(params):
  k0, b0, k1, b1 = OneHiddenLayer.of(params)
  return lambda x: (np.maximum(x @ k0 + b0, 0) @ k1 + b1)[:, 0]


def decision_boundaries(rows, x, y, path, title: str):
  """One row per entry of `rows` = [(label, [(name, params), ...]), ...]: each panel shows
  the data, the decision boundary (logit 0) and every hidden unit's line w.x + b = 0."""
  ncols = max(len(r[1]) for r in rows)
  fig, axes = new_figure(len(rows), ncols, (4 * ncols, 3.8 * len(rows)))
  lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
  grid = np.stack([gx.ravel(), gy.ravel()], 1)
  for r, (label, nets) in enumerate(rows):
    for c, (name, params) in enumerate(nets):
      ax = axes[r, c]
      z = _logit_fn(params)(grid).reshape(gx.shape)
      ax.contourf(gx, gy, z > 0, levels=[-0.5, 0.5, 1.5], colors=["#cfe0f5", "#f8d9c4"], alpha=0.8)
      ax.contour(gx, gy, z, levels=[0], colors="k", linewidths=2)
      k0, b0 = OneHiddenLayer.of(params)[:2]
      xs = np.linspace(lo[0], hi[0], 2)
      alpha = max(0.05, min(0.6, 20 / k0.shape[1]))  # hundreds of lines must not hide the data
      for j in range(k0.shape[1]):
        w1, w2, b = k0[0, j], k0[1, j], b0[j]
        if abs(w2) > 1e-9:
          ax.plot(xs, -(w1 * xs + b) / w2, color="gray", lw=0.6, alpha=alpha)
        elif abs(w1) > 1e-9:
          ax.axvline(-b / w1, color="gray", lw=0.6, alpha=alpha)
      ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=5, edgecolors="none")
      ax.set_xlim(lo[0], hi[0])
      ax.set_ylim(lo[1], hi[1])
      ax.set_title(f"{label}: {name}", fontsize=10)
      ax.set_xticks([])
      ax.set_yticks([])
    for c in range(len(nets), ncols):
      axes[r, c].axis("off")
  fig.suptitle(title + " (black: decision boundary; gray: each hidden unit's line w.x + b = 0)")
  fig.tight_layout()
  return save_figure(fig, path)


def cosine_matrices(nets, path, title: str):
  """`nets` = [(label, params)]: each unit-by-unit cosine similarity, clustered."""
  fig, axes = panel_grid(len(nets), size=3.4)
  for ax, (label, params) in zip(axes, nets):
    cos = cosine_similarity(params)
    order = single_linkage_order(1 - cos)
    im = ax.imshow(cos[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1,
                   interpolation="nearest")
    ax.set_title(label, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(im, ax=list(axes), fraction=0.03, pad=0.02, label="cosine similarity of [w, b]")
  fig.suptitle(title)
  return save_figure(fig, path)


def reduced_epsilon(records, path, title: str):
  """Fig 5.3: epsilon of the original nets (naive) and of the merged nets, naive and
  re-aligned, against width. `records`: `RedundancyRow`s (analysis.redundancy)."""
  x = np.log2([r.row["width"] for r in records])
  series = [("original, naive", "orig_naive", NAIVE_COLOR, -0.25),
            ("merged, naive", "red_naive", "#55A868", 0.0),
            ("merged, re-aligned", "red_aligned", ALIGNED_COLOR, 0.25)]
  fig, axes = new_figure(1, 1, (9, 4.2))
  ax = axes[0, 0]
  handles, dropped = [], 0
  for label, key, color, off in series:
    vals = [finite_values(getattr(r, key)) for r in records]
    dropped += sum(n for _, n in vals)
    bp = ax.boxplot([v for v, _ in vals], positions=x + off, widths=0.22, showfliers=False,
                    patch_artist=True)
    for box in bp["boxes"]:
      box.set_facecolor(color)
    for med in bp["medians"]:
      med.set_color("black")
    handles.append(bp["boxes"][0])
  # in a row above the boxes: inside the axes it covered the whiskers of the widest nets
  ax.legend(handles, [s[0] for s in series], loc="lower center", bbox_to_anchor=(0.5, 1.0),
            ncol=len(series), frameon=False)
  ax.set_xticks(x)
  ax.set_xticklabels([str(r.row["width"]) for r in records])
  ax.set_xlabel("hidden layer width (log2 axis)")
  ax.set_ylabel("epsilon (test loss)")
  ax.axhline(0, color="gray", lw=0.8, ls=":")
  ax.grid(axis="y", alpha=0.3)
  note = left_out(dropped, what="epsilons")
  ax.set_title(title + (f" ({note})" if note else ""), pad=24)
  return save_figure(fig, path)
