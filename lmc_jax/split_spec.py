"""The spec of a training split (`DataConfig.train_split`, the zoo's `--train_split`),
parsed: what the config checks and `data.splits` cuts the training set by (its docstring
says what each kind of split holds).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple, Tuple

KINDS = ("shard", "classes", "skew", "dirichlet")


class SplitError(ValueError):
  """A spec that does not parse or a part that would be empty; the message says what and
  the fix, without naming where the spec came from (the caller names its flag or field)."""


class Split(NamedTuple):
  """One part of a split, parsed."""
  kind: str  # one of KINDS
  part: int  # K (0 for classes)
  parts: int  # N (1 for classes)
  value: float  # P of skew, ALPHA of dirichlet (0 otherwise)
  labels: Tuple[int, ...]  # the labels of classes (empty otherwise)

  @property
  def slug(self) -> str:
    """A label for directory names: `shard0of2`, `classes0-4`, `classes1+3`,
    `skew0.8_0of2`, `dirichlet0.5_1of3`."""
    of = f"{self.part}of{self.parts}"
    if self.kind == "classes":
      ls = self.labels
      if len(ls) > 2 and ls == tuple(range(ls[0], ls[-1] + 1)):
        return f"classes{ls[0]}-{ls[-1]}"
      return "classes" + "+".join(map(str, ls))
    if self.kind == "shard":
      return f"shard{of}"
    return f"{self.kind}{self.value:g}_{of}"


def _part_of(text: str, spec: str) -> Tuple[int, int]:
  m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
  if not m:
    raise SplitError(f"is {spec!r}, whose part {text!r} is not K/N (e.g. 0/2)")
  k, n = int(m.group(1)), int(m.group(2))
  if n < 1 or k >= n:
    raise SplitError(f"is {spec!r}, whose part {k} of {n} does not exist (K counts from 0 "
                     f"and must be below N; e.g. {min(k, max(n, 1) - 1)}/{max(n, 1)})")
  return k, n


def _labels_of(text: str, spec: str) -> Tuple[int, ...]:
  labels = []
  for piece in text.split(","):
    piece = piece.strip()
    m = re.fullmatch(r"(\d+)-(\d+)", piece)
    if m and int(m.group(1)) <= int(m.group(2)):
      labels.extend(range(int(m.group(1)), int(m.group(2)) + 1))
    elif piece.isdigit():
      labels.append(int(piece))
    else:
      raise SplitError(f"is {spec!r}, whose {piece!r} is not a label or a range A-B of labels "
                       "(e.g. classes:0-4 or classes:1,3,5)")
  return tuple(sorted(set(labels)))


def _number(text: str, spec: str, what: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not math.isfinite(value):
    raise SplitError(f"is {spec!r}, whose {what} {text!r} is not a number")
  return value


def parse_split(spec: str) -> Split:
  """The part `spec` names (see the module docstring), or a `SplitError` saying what is
  wrong with it; the empty spec is not a split (the caller keeps the whole set)."""
  kind, _, rest = spec.strip().partition(":")
  if kind not in KINDS or not rest:
    raise SplitError(f"is {spec!r}, not one of shard:K/N, classes:A-B, classes:I,J,..., "
                     "skew:P:K/N, dirichlet:ALPHA:K/N (or empty for the whole training set)")
  if kind == "classes":
    return Split(kind, 0, 1, 0.0, _labels_of(rest, spec))
  if kind == "shard":
    return Split(kind, *_part_of(rest, spec), 0.0, ())
  value, _, part = rest.partition(":")
  k, n = _part_of(part, spec)
  v = _number(value, spec, "P" if kind == "skew" else "ALPHA")
  if kind == "skew" and not 0 <= v <= 1:
    raise SplitError(f"is {spec!r}, whose fraction P={v:g} is not within [0, 1]")
  if kind == "skew" and n < 2:
    raise SplitError(f"is {spec!r}: a skewed split needs N >= 2 shards (e.g. skew:{v:g}:0/2)")
  if kind == "dirichlet" and v <= 0:
    raise SplitError(f"is {spec!r}, whose ALPHA={v:g} must be > 0")
  return Split(kind, k, n, v, ())
