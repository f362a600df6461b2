"""Training on part of the data: which training examples one part of a split holds.

A split is written as a spec string (the zoo's `--train_split`, `DataConfig.train_split`):

- `shard:K/N`: the K-th (0-based) of N disjoint shards, each class's examples cut into N
  near-equal pieces after a seeded permutation (class-balanced);
- `classes:A-B` or `classes:I,J,...`: every training example of those labels;
- `skew:P:K/N`: the labels cut into N near-equal blocks; each class of block b gives a
  fraction P (rounded) of its examples to shard b and cuts the rest into N - 1 near-equal
  pieces for the other shards (Git Re-Basin's biased split at N = 2, P = 0.8);
- `dirichlet:ALPHA:K/N`: each class's examples shared among N shards in proportions drawn
  from a Dirichlet(ALPHA, ..., ALPHA) (the usual federated label skew).

The N parts of one split are disjoint and cover the training set (for `classes`: the
examples of its labels). Permutations and proportions come from numpy's PCG64 seeded by
the data seed, so the same seed gives the same parts on every machine, whichever part is
asked for. The test split is never cut.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from lmc_jax.split_spec import KINDS, Split, SplitError, parse_split

__all__ = ["KINDS", "Split", "SplitError", "parse_split", "split_indices", "part_classes",
           "class_counts"]

_STREAM = 10  # seeds the splits' generators apart from the subsets' (streams 2 and 3)


def _class_pieces(split: Split, labels: np.ndarray, num_classes: int, seed: int):
  """`[(class, [indices of part 0, ..., part N-1])]`, every class's examples cut into the
  split's N parts (indices into `labels`, each piece sorted)."""
  rng = np.random.default_rng([seed, _STREAM, KINDS.index(split.kind)])
  n = split.parts
  blocks = np.array_split(np.arange(num_classes), n) if split.kind == "skew" else None
  out = []
  for c in range(num_classes):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if split.kind == "shard":
      cuts = np.cumsum([len(p) for p in np.array_split(np.arange(len(idx)), n)])[:-1]
    elif split.kind == "skew":
      own = next(b for b, block in enumerate(blocks) if c in block)
      keep = int(np.floor(split.value * len(idx) + 0.5))
      rest = [len(p) for p in np.array_split(np.arange(len(idx) - keep), n - 1)]
      sizes = rest[:own] + [keep] + rest[own:]
      cuts = np.cumsum(sizes)[:-1]
    else:  # dirichlet: proportions drawn even for classes absent here, so draws line up
      q = rng.dirichlet(np.full(n, split.value))
      cuts = np.floor(np.cumsum(q)[:-1] * len(idx) + 0.5).astype(int)
    out.append((c, [np.sort(p) for p in np.split(idx, cuts)]))
  return out


def split_indices(spec: str, labels, num_classes: int, seed: int = 0) -> np.ndarray:
  """`(m,)` int64, sorted: the indices into `labels` `(n,)` that part `spec` holds. Raises
  `SplitError` for a spec that names labels outside `0..num_classes-1` or a part that
  would hold no example."""
  split = parse_split(spec)
  labels = np.asarray(labels)
  if split.kind == "classes":
    outside = [c for c in split.labels if c >= num_classes]
    if outside:
      raise SplitError(f"is {spec!r}, naming label(s) {outside} of a dataset with "
                       f"{num_classes} classes (labels 0..{num_classes - 1})")
    keep = np.flatnonzero(np.isin(labels, split.labels))
  else:
    pieces = _class_pieces(split, labels, num_classes, seed)
    keep = np.sort(np.concatenate([p[split.part] for _, p in pieces]))
  if keep.size == 0:
    raise SplitError(f"is {spec!r}, a part that holds no training example; choose fewer "
                     "shards, other labels or a larger ALPHA")
  return keep.astype(np.int64)


def part_classes(spec: str, counts, num_classes: int) -> Tuple[int, ...]:
  """The classes a part trained on `counts` `(C,)` examples per class is about (per-part
  accuracy is measured on them): the labels of `classes`; for `skew` its own block; for
  `dirichlet` the classes over-represented in it (more than 1/C of its examples); every
  class for `shard` and for the whole training set (the empty spec)."""
  if not spec:
    return tuple(range(num_classes))
  split = parse_split(spec)
  if split.kind == "classes":
    return split.labels
  if split.kind == "skew":
    return tuple(int(c) for c in np.array_split(np.arange(num_classes), split.parts)[split.part])
  if split.kind == "dirichlet":
    counts = np.asarray(counts, np.float64)
    totals = counts.sum()
    return tuple(int(c) for c in range(num_classes)
                 if totals and counts[c] / totals > 1.0 / num_classes)
  return tuple(range(num_classes))


def class_counts(labels, num_classes: int) -> Tuple[int, ...]:
  """Examples per class `(C,)` of `labels` `(n,)`."""
  return tuple(int(c) for c in np.bincount(np.asarray(labels, np.int64), minlength=num_classes))
