"""merge.json as a typed record (`MergeResult`), written by `experiments.merge`.

For P pairings (one model from each zoo), A alphas and parts (one per zoo: the classes
its training split is about), every network's scores are `(P, 1 + parts)` arrays: the
joint accuracy (or loss) and each part's accuracy. `from_json` is the schema check.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

import numpy as np

from lmc_jax.records import Record, floats, frozen_array
from lmc_jax.result_files import MERGE_FORMAT
from lmc_jax.schema import Checker, check_format


@dataclasses.dataclass(frozen=True, eq=False)
class MergeEntry(Record):
  """One method over every pairing: `acc` `(P, 1 + parts)` (joint accuracy, then each
  part's), `loss` `(P,)`, the curve along alpha (two models: `curve_acc`, `curve_loss`
  `(P, A)`; NaN for N models or zip), seconds per pairing `(P,)` and the permutations of
  the first pairing (`{perm: [[...] per model]}`; empty for naive and zip)."""
  acc: np.ndarray
  loss: np.ndarray
  curve_acc: np.ndarray
  curve_loss: np.ndarray
  seconds: np.ndarray
  perms: Mapping[str, list] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(**{k: frozen_array(getattr(self, k)) for k in
                 ("acc", "loss", "curve_acc", "curve_loss", "seconds")})

  def to_json(self) -> dict:
    return {"acc": floats(self.acc), "loss": floats(self.loss),
            "curve_acc": floats(self.curve_acc), "curve_loss": floats(self.curve_loss),
            "seconds": floats(self.seconds), "perms": dict(self.perms)}

  @classmethod
  def read(cls, c: Checker, doc, field: str, pairs: int, cols: int, alphas: int):
    c.obj(doc, field)
    m = lambda k, r, n: c.matrix(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}", r, n)
    perms = c.obj(doc.get("perms", {}), f"{field}.perms")
    return cls(m("acc", pairs, cols), c.numbers(c.get(doc, "loss", f"{field}.loss"),
                                                 f"{field}.loss", pairs),
               m("curve_acc", pairs, alphas), m("curve_loss", pairs, alphas),
               c.numbers(c.get(doc, "seconds", f"{field}.seconds"), f"{field}.seconds", pairs),
               perms)


@dataclasses.dataclass(frozen=True, eq=False)
class MergeResult(Record):
  """merge.json: the zoos (directories), their training splits and the classes of each
  part, the pairings `(P, Z)` (a model of each zoo), the alphas, the settings, the parents'
  and the ensemble's scores (`parents` `(Z, P, 1 + parts)` accuracies and `(Z, P)` losses),
  and one `MergeEntry` per method, keyed `<method>` and, with REPAIR, `<method>+repair`."""
  zoos: Tuple[str, ...]
  splits: Tuple[str, ...]
  parts: Tuple[Tuple[int, ...], ...]
  pairings: np.ndarray
  alphas: np.ndarray
  settings: Mapping[str, object]
  parent_acc: np.ndarray
  parent_loss: np.ndarray
  ensemble_acc: np.ndarray
  ensemble_loss: np.ndarray
  methods: Mapping[str, MergeEntry]
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(zoos=tuple(self.zoos), splits=tuple(self.splits),
              parts=tuple(tuple(p) for p in self.parts),
              pairings=frozen_array(self.pairings, np.int64), alphas=frozen_array(self.alphas),
              parent_acc=frozen_array(self.parent_acc), parent_loss=frozen_array(self.parent_loss),
              ensemble_acc=frozen_array(self.ensemble_acc),
              ensemble_loss=frozen_array(self.ensemble_loss), methods=dict(self.methods))

  def to_json(self) -> dict:
    return {"format": MERGE_FORMAT, "zoos": list(self.zoos), "splits": list(self.splits),
            "parts": [list(p) for p in self.parts], "pairings": self.pairings.tolist(),
            "alphas": floats(self.alphas), "settings": dict(self.settings),
            "parents": {"acc": floats(self.parent_acc), "loss": floats(self.parent_loss)},
            "ensemble": {"acc": floats(self.ensemble_acc), "loss": floats(self.ensemble_loss)},
            "methods": {k: v.to_json() for k, v in self.methods.items()},
            "versions": dict(self.versions)}

  @classmethod
  def read(cls, c: Checker, doc, _unused: Optional[int] = None) -> "MergeResult":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, MERGE_FORMAT)
    zoos = tuple(c.string(z, f"zoos[{k}]") for k, z in enumerate(c.seq(c.get(doc, "zoos"),
                                                                          "zoos")))
    z = len(zoos)
    splits = tuple(c.string(s, f"splits[{k}]")
                   for k, s in enumerate(c.seq(c.get(doc, "splits"), "splits", z)))
    parts = tuple(c.integers(p, f"parts[{k}]")
                  for k, p in enumerate(c.seq(c.get(doc, "parts"), "parts", z)))
    rows = c.seq(c.get(doc, "pairings"), "pairings")
    pairings = np.array([c.integers(r, f"pairings[{k}]") for k, r in enumerate(rows)],
                        np.int64).reshape(len(rows), -1)
    if pairings.shape[1] != z:
      c.fail("pairings", f"holds pairings of {pairings.shape[1]} models for {z} zoos")
    p, cols = len(rows), 1 + z
    alphas = c.numbers(c.get(doc, "alphas"), "alphas")
    parents, ens = c.obj(c.get(doc, "parents"), "parents"), c.obj(c.get(doc, "ensemble"),
                                                                   "ensemble")
    parent_acc = np.array([c.matrix(a, f"parents.acc[{k}]", p, cols) for k, a in
                           enumerate(c.seq(c.get(parents, "acc", "parents.acc"),
                                           "parents.acc", z))]).reshape(z, p, cols)
    parent_loss = c.matrix(c.get(parents, "loss", "parents.loss"), "parents.loss", z, p)
    methods = {name: MergeEntry.read(c, e, f"methods.{name}", p, cols, len(alphas))
               for name, e in c.obj(c.get(doc, "methods"), "methods").items()}
    return cls(zoos, splits, parts, pairings, alphas, dict(c.obj(c.get(doc, "settings"),
                                                                 "settings")),
               parent_acc, parent_loss,
               c.matrix(c.get(ens, "acc", "ensemble.acc"), "ensemble.acc", p, cols),
               c.numbers(c.get(ens, "loss", "ensemble.loss"), "ensemble.loss", p), methods,
               dict(c.obj(doc.get("versions", {}), "versions")))
