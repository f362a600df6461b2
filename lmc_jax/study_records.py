"""Typed records of the files the study's other experiments write: swa.json (E4),
plane.json (E9), redundancy.json (E5) and `<name>_dynamics.json` (E6-E8). Each is a
`records.Record`: `from_json` checks, `to_json` writes (see `lmc_jax.records`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Tuple

import numpy as np

from lmc_jax.records import CurveSet, Record, floats, frozen_array, versions_of
from lmc_jax.result_files import DYNAMICS_FORMAT, PLANE_FORMAT, REDUNDANCY_FORMAT, SWA_FORMAT
from lmc_jax.schema import Checker, check_format, show


@dataclasses.dataclass(frozen=True, eq=False)
class SwaRecord(Record):
  """swa.json: SWA continued from `model` for `epochs` epochs at `lr`; the test loss of the
  model it started from, of each sample `(E,)` and of their running average after each
  `(E,)`, and the curves between every pair of samples at `alphas` `(A,)`."""
  model: int
  epochs: int
  lr: float
  seed: int
  start_loss: float
  sample_loss: np.ndarray
  average_loss: np.ndarray
  alphas: np.ndarray
  samples: CurveSet
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(sample_loss=frozen_array(self.sample_loss),
              average_loss=frozen_array(self.average_loss),
              alphas=frozen_array(self.alphas), start_loss=float(self.start_loss),
              lr=float(self.lr), versions=dict(self.versions))

  def to_json(self) -> dict:
    return {"format": SWA_FORMAT, "model": self.model, "epochs": self.epochs, "lr": self.lr,
            "seed": self.seed, "start_loss": self.start_loss,
            "sample_loss": floats(self.sample_loss), "average_loss": floats(self.average_loss),
            "alphas": floats(self.alphas), "samples": self.samples.to_json(),
            "versions": dict(self.versions)}

  @classmethod
  def read(cls, c: Checker, doc) -> "SwaRecord":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, SWA_FORMAT)
    epochs = c.integer(c.get(doc, "epochs"), "epochs", 2)
    alphas = c.numbers(c.get(doc, "alphas"), "alphas")
    return cls(c.integer(c.get(doc, "model"), "model", 0), epochs,
               c.number(c.get(doc, "lr"), "lr"), c.integer(c.get(doc, "seed"), "seed", 0),
               c.number_or_null(c.get(doc, "start_loss"), "start_loss"),
               c.numbers(c.get(doc, "sample_loss"), "sample_loss", epochs),
               c.numbers(c.get(doc, "average_loss"), "average_loss", epochs), alphas,
               CurveSet.read(c, c.get(doc, "samples"), "samples", len(alphas), epochs),
               versions_of(c, doc))


@dataclasses.dataclass(frozen=True, eq=False)
class PlaneGrid(Record):
  """The loss on a plane through three networks: grid coordinates `xs`, `ys` `(R,)`, test
  loss and accuracy `(R, R)` indexed `[iy, ix]`, the three networks' coordinates `corners`
  `(3, 2)` and their losses `corner_loss` `(3,)`."""
  xs: np.ndarray
  ys: np.ndarray
  loss: np.ndarray
  acc: np.ndarray
  corners: np.ndarray
  corner_loss: np.ndarray

  def __post_init__(self):
    self._set(**{f.name: frozen_array(getattr(self, f.name))
                 for f in dataclasses.fields(self)})

  def to_json(self) -> dict:
    return {f.name: floats(getattr(self, f.name)) for f in dataclasses.fields(self)}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "grid") -> "PlaneGrid":
    c.obj(doc, field)
    xs = c.numbers(c.get(doc, "xs", f"{field}.xs"), f"{field}.xs")
    ys = c.numbers(c.get(doc, "ys", f"{field}.ys"), f"{field}.ys")
    grids = {k: c.matrix(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}", len(ys), len(xs))
             for k in ("loss", "acc")}
    corners = c.seq(c.get(doc, "corners", f"{field}.corners"), f"{field}.corners", 3)
    return cls(xs, ys, grids["loss"], grids["acc"],
               [c.numbers(p, f"{field}.corners[{k}]", 2) for k, p in enumerate(corners)],
               c.numbers(c.get(doc, "corner_loss", f"{field}.corner_loss"),
                         f"{field}.corner_loss", 3))


@dataclasses.dataclass(frozen=True, eq=False)
class PlaneRecord(Record):
  """plane.json: the loss plane through `models` (A, B, C) on `split`, naive and with B
  and C weight-matched to A, with matmuls at `precision`."""
  models: Tuple[int, int, int]
  naive: PlaneGrid
  aligned: PlaneGrid
  split: str = "test"
  precision: str = "fp32"
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(models=tuple(int(k) for k in self.models), versions=dict(self.versions))

  def to_json(self) -> dict:
    return {"format": PLANE_FORMAT, "models": list(self.models), "split": self.split,
            "precision": self.precision, "naive": self.naive.to_json(),
            "aligned": self.aligned.to_json(), "versions": dict(self.versions)}

  @classmethod
  def read(cls, c: Checker, doc) -> "PlaneRecord":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, PLANE_FORMAT)
    models = c.seq(c.get(doc, "models"), "models", 3)
    return cls(tuple(c.integer(m, f"models[{k}]", 0) for k, m in enumerate(models)),
               PlaneGrid.read(c, c.get(doc, "naive"), "naive"),
               PlaneGrid.read(c, c.get(doc, "aligned"), "aligned"),
               c.string(doc.get("split", "test"), "split"),
               c.string(doc.get("precision", "fp32"), "precision"), versions_of(c, doc))


@dataclasses.dataclass(frozen=True, eq=False)
class RedundancyRecord(Record):
  """redundancy.json: units merged above cosine similarity `threshold` in every model of
  the zoo at `zoo` (hidden width `width`); per model `(N,)` the width after merging and the
  reduced net's test loss and accuracy; the usable `models`; and the curves between the
  reduced nets at `alphas`, naive and re-aligned to `reference`."""
  zoo: str
  threshold: float
  reference: int
  alphas: np.ndarray
  width: int
  reduced_width: np.ndarray
  reduced_test_loss: np.ndarray
  reduced_test_acc: np.ndarray
  models: Tuple[int, ...]
  naive: CurveSet
  aligned: CurveSet
  params_sha256: str
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(alphas=frozen_array(self.alphas),
              reduced_width=frozen_array(self.reduced_width, np.int64),
              reduced_test_loss=frozen_array(self.reduced_test_loss),
              reduced_test_acc=frozen_array(self.reduced_test_acc),
              models=tuple(int(k) for k in self.models), versions=dict(self.versions))

  def to_json(self) -> dict:
    return {"format": REDUNDANCY_FORMAT, "zoo": self.zoo, "threshold": self.threshold,
            "reference": self.reference, "alphas": floats(self.alphas), "width": self.width,
            "reduced_width": self.reduced_width.tolist(),
            "reduced_test_loss": floats(self.reduced_test_loss),
            "reduced_test_acc": floats(self.reduced_test_acc), "models": list(self.models),
            "naive": self.naive.to_json(), "aligned": self.aligned.to_json(),
            "params_sha256": self.params_sha256, "versions": dict(self.versions)}

  @classmethod
  def read(cls, c: Checker, doc) -> "RedundancyRecord":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, REDUNDANCY_FORMAT)
    alphas = c.numbers(c.get(doc, "alphas"), "alphas")
    widths = c.integers(c.get(doc, "reduced_width"), "reduced_width")
    n = len(widths)
    curves = {k: CurveSet.read(c, c.get(doc, k), k, len(alphas), n) for k in ("naive", "aligned")}
    return cls(c.string(c.get(doc, "zoo"), "zoo"), c.number(c.get(doc, "threshold"), "threshold"),
               c.integer(c.get(doc, "reference"), "reference", 0, n - 1), alphas,
               c.integer(c.get(doc, "width"), "width", 1), widths,
               c.numbers(c.get(doc, "reduced_test_loss"), "reduced_test_loss", n),
               c.numbers(c.get(doc, "reduced_test_acc"), "reduced_test_acc", n),
               c.integers(c.get(doc, "models"), "models"), curves["naive"], curves["aligned"],
               c.string(c.get(doc, "params_sha256"), "params_sha256"), versions_of(c, doc))


@dataclasses.dataclass(frozen=True, eq=False)
class GroupRow(Record):
  """One group of a dynamics comparison (the study's Tables 5.2, 5.3): its label, how many
  models, test loss and accuracy as 'mean +- std', and median epsilon within the group and
  across to the others (all aligned to the best model)."""
  group: str
  models: int
  test_loss: str
  test_acc: str
  eps_within: float
  eps_across: float

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def read(cls, c: Checker, doc, field: str = "table[0]") -> "GroupRow":
    c.obj(doc, field)
    text = {k: c.string(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}")
            for k in ("group", "test_loss", "test_acc")}
    eps = {k: c.number_or_null(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}")
           for k in ("eps_within", "eps_across")}
    return cls(models=c.integer(c.get(doc, "models", f"{field}.models"), f"{field}.models", 0),
               **text, **eps)


@dataclasses.dataclass(frozen=True, eq=False)
class DynamicsRecord(Record):
  """`<name>_dynamics.json`: zoos of one architecture compared as groups. `labels` per
  group; per model `(N,)` its group and `origin` (zoo directory, model index there); the
  reference of each star alignment; one `GroupRow` per group; and the `(N, N)` epsilon
  matrix of each alignment ('naive', 'best', 'best_of_<label>', 'pairwise')."""
  zoos: Tuple[str, ...]
  labels: Tuple[str, ...]
  groups: np.ndarray
  origin: Tuple[Tuple[str, int], ...]
  references: Mapping[str, int]
  table: Tuple[GroupRow, ...]
  epsilon: Mapping[str, np.ndarray]
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._set(zoos=tuple(self.zoos), labels=tuple(self.labels),
              groups=frozen_array(self.groups, np.int64),
              origin=tuple((str(d), int(k)) for d, k in self.origin),
              references={k: int(v) for k, v in self.references.items()},
              table=tuple(self.table),
              epsilon={k: frozen_array(v) for k, v in self.epsilon.items()},
              versions=dict(self.versions))

  def matrix(self, name: str) -> np.ndarray:
    """The epsilon matrix `(N, N)` of alignment `name`."""
    return self.epsilon[name]

  @property
  def star_alignments(self) -> Tuple[str, ...]:
    """The alignments of every model to one reference (see `references`), 'best' first."""
    return tuple(self.references)

  def to_json(self) -> dict:
    return {"format": DYNAMICS_FORMAT, "zoos": list(self.zoos), "labels": list(self.labels),
            "groups": self.groups.tolist(), "origin": [list(o) for o in self.origin],
            "references": dict(self.references), "table": [r.to_json() for r in self.table],
            "epsilon": {k: floats(v) for k, v in self.epsilon.items()},
            "versions": dict(self.versions)}

  @classmethod
  def read(cls, c: Checker, doc) -> "DynamicsRecord":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, DYNAMICS_FORMAT)
    groups = c.integers(c.get(doc, "groups"), "groups")
    n = len(groups)
    origin = []
    for k, o in enumerate(c.seq(c.get(doc, "origin"), "origin", n)):
      if not (isinstance(o, list) and len(o) == 2):
        c.fail(f"origin[{k}]", f"is {show(o)}, not a pair [zoo, model]")
      origin.append((c.string(o[0], f"origin[{k}]"), c.integer(o[1], f"origin[{k}]", 0)))
    refs = c.obj(c.get(doc, "references"), "references")
    matrices = {name: c.matrix(m, f"epsilon.{name}", n, n)
                for name, m in c.obj(c.get(doc, "epsilon"), "epsilon").items()}
    return cls(tuple(c.string(z, f"zoos[{k}]") for k, z in enumerate(c.seq(c.get(doc, "zoos"),
                                                                          "zoos"))),
               tuple(c.string(s, f"labels[{k}]") for k, s in enumerate(c.seq(c.get(doc, "labels"),
                                                                             "labels"))),
               groups, tuple(origin),
               {k: c.integer(v, f"references.{k}", 0, n - 1) for k, v in refs.items()},
               tuple(GroupRow.read(c, r, f"table[{k}]")
                     for k, r in enumerate(c.seq(c.get(doc, "table"), "table"))),
               matrices, versions_of(c, doc))
