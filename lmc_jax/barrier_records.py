"""Typed records of barrier.json (`analysis.barrier` writes it), format 5:

  {"format": 5, "zoo", "split", "bn_reset": {"batches", "batch_size"} or null, "precision",
   "reference", "alphas": [A floats], "excluded": [diverged models],
   "collapsed": [models at chance accuracy, kept in every pair],
   "naive": {curves, "repaired": REPAIR (optional), "calibrated": CALIBRATED (optional)},
   "methods": {"<name>": {"reference", "settings", "seconds", "sweep_seconds", "info",
                          "fraction_moved", "perms", "maps" (optional), curves,
                          "repaired": REPAIR (optional),
                          "calibrated": CALIBRATED (optional)}
                         or {"settings", "skipped": why}, ...},
   "diagnostics": {...} (optional), "seconds", "params_sha256", "versions"}

where curves are the keys of a `CurveSet` ("pairs", "loss", "acc" and one per measure),
REPAIR is {"fit_samples", curves} or {"fit_samples", "skipped": why}, and CALIBRATED is
{"held_out", "temperature": (P, A), curves}: each network's loss at its own softmax
temperature, fit on `held_out` training rows (`lmc.temperature`). "maps" (format 5), of
a method that rotates groups (`orthogonal`), holds per model {group: (n, n) orthogonal
matrix as rows, or (H, n, n), one per unit of the group's head group}: the model is
aligned by its permutations and then `new = map @ old` on every axis of each group
(`symmetry.spec.orient_zoo`). Format 4 is format 5 without maps, format 3 format 4
without CALIBRATED (both read as they are); permutations may be signed
(`~j`: unit j flipped).
Weight matching (the study's measure, 'aligned') is the entry `methods.weight`, like every
other method.

Earlier formats are read into the same records, so every reader sees one layout: format 2
kept weight matching's curves once, as a top-level "aligned" (with method, max_iter, seed,
matcher and sweeps beside them) and `methods.weight` without curves; format 1 (no "format"
key) held them in both places. Both kept REPAIR's curves as entries "<name>+repair" of
"methods" (and "naive+repair").
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from lmc_jax.records import CurveSet, Record, floats, frozen_array, versions_of
from lmc_jax.result_files import BARRIER_FORMAT
from lmc_jax.schema import Checker, check_format, is_int

LEGACY_REPAIR = "+repair"  # formats 1 and 2: methods["<name>+repair"] held REPAIR's curves


def barrier_fix(path) -> str:
  """How to replace a bad barrier.json at `path`."""
  return f"recompute it with `python -m experiments.barrier --zoo={Path(path).parent} --recompute`"


def _optional(doc: dict, key: str, field: str, read):
  """`read(value, field)` of `doc[key]`, or None where it is missing or null."""
  value = doc.get(key)
  return None if value is None else read(value, field)


@dataclasses.dataclass(frozen=True, eq=False)
class BnReset(Record):
  """How every interpolated net's BatchNorm statistics were recomputed: on `batches`
  training batches of `batch_size`."""
  batches: int
  batch_size: int
  FIX = staticmethod(barrier_fix)

  def to_json(self) -> dict:
    return {"batches": self.batches, "batch_size": self.batch_size}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "bn_reset") -> "BnReset":
    c.obj(doc, field)
    return cls(*(c.integer(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}", 1)
                 for k in ("batches", "batch_size")))


@dataclasses.dataclass(frozen=True, eq=False)
class RepairEntry(Record):
  """One set of curves measured after REPAIR with `fit_samples` training inputs, or why
  REPAIR was `skipped` (then `curves` is None)."""
  fit_samples: Optional[int]
  curves: Optional[CurveSet] = None
  skipped: Optional[str] = None
  FIX = staticmethod(barrier_fix)

  def to_json(self) -> dict:
    doc = {} if self.fit_samples is None else {"fit_samples": self.fit_samples}
    if self.curves is not None:
      doc.update(self.curves.to_json())
    if self.skipped is not None:
      doc["skipped"] = self.skipped
    return doc

  @classmethod
  def read(cls, c: Checker, doc, field: str = "repaired", num_alphas: Optional[int] = None,
           num_models: Optional[int] = None) -> "RepairEntry":
    c.obj(doc, field)
    n = _optional(doc, "fit_samples", f"{field}.fit_samples",
                  lambda v, f: c.integer(v, f, 1))
    if "skipped" in doc:
      return cls(n, skipped=c.string(doc["skipped"], f"{field}.skipped"))
    return cls(n, CurveSet.read(c, doc, field, num_alphas, num_models))


def _read_perms(c: Checker, perms, field: str, num_models: Optional[int],
                sizes: Optional[Dict[str, int]]) -> tuple:
  """One dict per model of permutation name -> a permutation of 0..n-1, or a signed one
  (`~j` for unit j flipped: `symmetry.spec`) (n from `sizes` where given, whose names each
  dict must hold)."""
  out = []
  for k, perm in enumerate(c.seq(perms, field, num_models)):
    c.obj(perm, f"{field}[{k}]")
    if sizes is not None and set(perm) != set(sizes):
      c.fail(f"{field}[{k}]", f"names permutations {sorted(perm)}, not the network's "
             f"{sorted(sizes)}")
    for name, value in perm.items():
      where = f"{field}[{k}].{name}"
      n = sizes[name] if sizes is not None else (len(value) if isinstance(value, list) else 0)
      c.seq(value, where, n)
      if not all(is_int(v) for v in value) or not np.array_equal(
          np.sort(np.where(np.asarray(value) < 0, ~np.asarray(value), value)), np.arange(n)):
        c.fail(where, f"is not a permutation of 0..{n - 1}, signed or not")
    out.append({name: np.asarray(value, np.int64) for name, value in perm.items()})
  return tuple(out)


ORTHOGONAL_TOL = 1e-4  # largest |q q^T - I| of a stored map (float32 round-trips to ~1e-6)


def _read_maps(c: Checker, maps, field: str, num_models: Optional[int],
               sizes: Optional[Dict[str, int]]) -> tuple:
  """One dict per model of group name -> orthogonal `(n, n)` matrix, or `(H, n, n)`, one per
  head (n from `sizes` where given, whose names each dict's must be among); every model
  names the same groups, with the same shapes."""
  out = []
  for k, doc in enumerate(c.seq(maps, field, num_models)):
    c.obj(doc, f"{field}[{k}]")
    if sizes is not None and not set(doc) <= set(sizes):
      c.fail(f"{field}[{k}]", f"names groups {sorted(set(doc) - set(sizes))} the network "
             f"does not have (it has {sorted(sizes)})")
    if out and set(doc) != set(out[0]):
      c.fail(f"{field}[{k}]", f"names groups {sorted(doc)}, not model 0's {sorted(out[0])}")
    model = {}
    for name, value in doc.items():
      where = f"{field}[{k}].{name}"
      rows = c.seq(value, where)
      per_head = bool(rows) and isinstance(rows[0], list) and bool(rows[0]) and isinstance(
          rows[0][0], list)
      n = sizes[name] if sizes is not None else len(rows[0] if per_head else rows)
      if per_head:
        q = np.stack([_orthogonal(c, head, f"{where}[{h}]", n)  # a map per head
                      for h, head in enumerate(rows)])
      else:
        q = _orthogonal(c, value, where, n)
      if out and q.shape != out[0][name].shape:
        c.fail(where, f"has shape {q.shape}, not model 0's {out[0][name].shape}")
      model[name] = q
    out.append(model)
  return tuple(out)


def _orthogonal(c: Checker, value, where: str, n: int) -> np.ndarray:
  q = c.matrix(value, where, n, n)
  if not np.all(np.isfinite(q)) or np.abs(q @ q.T - np.eye(n)).max() > ORTHOGONAL_TOL:
    c.fail(where, f"is not an orthogonal {n}x{n} matrix (q q^T differs from the identity "
           f"by more than {ORTHOGONAL_TOL})")
  return q


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationEntry(Record):
  """One set of curves at each network's own softmax temperature, fit on `held_out`
  training rows the zoo did not train on: `temperature` `(P, A)` and the curves (loss
  calibrated, accuracy as measured, and every measure of the calibrated loss)."""
  held_out: int
  temperature: np.ndarray
  curves: CurveSet
  FIX = staticmethod(barrier_fix)

  def __post_init__(self):
    self._set(held_out=int(self.held_out), temperature=frozen_array(self.temperature))

  def to_json(self) -> dict:
    return {"held_out": self.held_out,
            "temperature": [floats(row) for row in self.temperature], **self.curves.to_json()}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "calibrated", num_alphas: Optional[int] = None,
           num_models: Optional[int] = None) -> "CalibrationEntry":
    c.obj(doc, field)
    held_out = c.integer(c.get(doc, "held_out", f"{field}.held_out"), f"{field}.held_out", 1)
    curves = CurveSet.read(c, doc, field, num_alphas, num_models)
    t = c.matrix(c.get(doc, "temperature", f"{field}.temperature"), f"{field}.temperature")
    if t.shape != curves.loss.shape:
      c.fail(f"{field}.temperature", f"has shape {t.shape}, not the curves' {curves.loss.shape}")
    return cls(held_out, t, curves)


@dataclasses.dataclass(frozen=True, eq=False)
class MethodEntry(Record):
  """One alignment method's entry of barrier.json: the `settings` that affect it (as
  `MethodSettings.for_method` gives them), the reference it aligned to, the seconds it and
  its sweep took, what it reports (`info`), per model the share of units it moved and its
  permutations (name -> int array), the curves after it and after REPAIR; or, for a method
  that could not run, why (`skipped`: the rest is then None or empty). A method that
  rotates groups also holds per model its orthogonal `maps` (group -> `(n, n)`; in the
  share moved, the units of a rotated group count as unmoved)."""
  name: str
  settings: Optional[Mapping[str, Any]] = None
  reference: Optional[int] = None
  seconds: Optional[float] = None
  sweep_seconds: Optional[float] = None
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  fraction_moved: Tuple[float, ...] = ()
  perms: Tuple[Mapping[str, np.ndarray], ...] = ()
  curves: Optional[CurveSet] = None
  repaired: Optional[RepairEntry] = None
  skipped: Optional[str] = None
  calibrated: Optional[CalibrationEntry] = None
  maps: Tuple[Mapping[str, np.ndarray], ...] = ()
  FIX = staticmethod(barrier_fix)

  def __post_init__(self):
    self._set(info=dict(self.info), fraction_moved=tuple(float(v) for v in self.fraction_moved),
              perms=tuple({p: frozen_array(v, np.int64) for p, v in pm.items()}
                          for pm in self.perms),
              maps=tuple({p: frozen_array(v, np.float64) for p, v in mk.items()}
                         for mk in self.maps),
              settings=None if self.settings is None else dict(self.settings))

  def to_json(self) -> dict:
    if self.skipped is not None:
      return {"skipped": self.skipped,
              **({} if self.settings is None else {"settings": dict(self.settings)})}
    doc = {k: v for k, v in (("reference", self.reference), ("settings", self.settings),
                             ("seconds", self.seconds), ("sweep_seconds", self.sweep_seconds))
           if v is not None}
    doc["info"] = dict(self.info)
    if self.fraction_moved:
      doc["fraction_moved"] = list(self.fraction_moved)
    if self.perms:
      doc["perms"] = [{p: v.tolist() for p, v in pm.items()} for pm in self.perms]
    if self.maps:
      doc["maps"] = [{p: floats(v) for p, v in mk.items()} for mk in self.maps]
    if self.curves is not None:
      doc.update(self.curves.to_json())
    if self.repaired is not None:
      doc["repaired"] = self.repaired.to_json()
    if self.calibrated is not None:
      doc["calibrated"] = self.calibrated.to_json()
    return doc

  @classmethod
  def read(cls, c: Checker, doc, field: str = "methods.weight", name: str = "weight",
           num_alphas: Optional[int] = None, num_models: Optional[int] = None,
           perm_sizes: Optional[Dict[str, int]] = None, curves: bool = True) -> "MethodEntry":
    """`curves=False`: the entry holds no curves of its own (weight matching, format 2)."""
    c.obj(doc, field)
    settings = _optional(doc, "settings", f"{field}.settings", c.obj)
    if "skipped" in doc:
      return cls(name, settings, skipped=c.string(doc["skipped"], f"{field}.skipped"))
    hi = None if num_models is None else num_models - 1
    return cls(
        name, settings,
        _optional(doc, "reference", f"{field}.reference", lambda v, f: c.integer(v, f, 0, hi)),
        *(c.number_or_null(doc[k], f"{field}.{k}") if k in doc else None  # null: NaN
          for k in ("seconds", "sweep_seconds")),
        c.obj(doc.get("info", {}), f"{field}.info"),
        tuple(c.numbers(doc.get("fraction_moved", []), f"{field}.fraction_moved")),
        _read_perms(c, doc["perms"], f"{field}.perms", num_models, perm_sizes)
        if "perms" in doc else (),
        CurveSet.read(c, doc, field, num_alphas, num_models) if curves else None,
        _optional(doc, "repaired", f"{field}.repaired",
                  lambda v, f: RepairEntry.read(c, v, f, num_alphas, num_models)),
        calibrated=_optional(doc, "calibrated", f"{field}.calibrated",
                             lambda v, f: CalibrationEntry.read(c, v, f, num_alphas, num_models)),
        maps=_read_maps(c, doc["maps"], f"{field}.maps", num_models, perm_sizes)
        if "maps" in doc else ())


@dataclasses.dataclass(frozen=True, eq=False)
class WeightRestarts(Record):
  """Weight matching of each of `models` onto the reference from R layer orders: the final
  objective and epsilon of every restart `(K, R)`, and the median and largest spread
  (max - min) of epsilon over a model's restarts."""
  models: Tuple[int, ...]
  objective: np.ndarray
  epsilon: np.ndarray
  median_epsilon_spread: float
  max_epsilon_spread: float
  FIX = staticmethod(barrier_fix)

  def __post_init__(self):
    self._set(models=tuple(int(k) for k in self.models),
              objective=frozen_array(self.objective),
              epsilon=frozen_array(self.epsilon),
              median_epsilon_spread=float(self.median_epsilon_spread),
              max_epsilon_spread=float(self.max_epsilon_spread))

  def to_json(self) -> dict:
    return {"models": list(self.models), "objective": floats(self.objective),
            "epsilon": floats(self.epsilon), "median_epsilon_spread": self.median_epsilon_spread,
            "max_epsilon_spread": self.max_epsilon_spread}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "diagnostics.weight_restarts") -> "WeightRestarts":
    c.obj(doc, field)
    spreads = []
    for key in ("median_epsilon_spread", "max_epsilon_spread"):
      value = c.get(doc, key, f"{field}.{key}")
      missing = value is None or (isinstance(value, float) and np.isnan(value))  # null: NaN
      spreads.append(float("nan") if missing else c.number(value, f"{field}.{key}"))
    models = c.integers(doc.get("models", []), f"{field}.models")
    return cls(models, c.matrix(doc.get("objective", []), f"{field}.objective"),
               c.matrix(doc.get("epsilon", []), f"{field}.epsilon"), *spreads)


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnostics(Record):
  """How far to trust an alignment (`align.diagnostics`): per triple (reference, a, b) of
  `triples` the cycle consistency of weight and of activation matching `(T,)`, weight
  matching's spread over restarts, and the `settings` they were measured with."""
  weight_cycle_consistency: np.ndarray
  activation_cycle_consistency: np.ndarray
  weight_restarts: WeightRestarts
  triples: Tuple[Tuple[int, int, int], ...] = ()
  settings: Optional[Mapping[str, Any]] = None
  FIX = staticmethod(barrier_fix)

  def __post_init__(self):
    self._set(weight_cycle_consistency=frozen_array(self.weight_cycle_consistency),
              activation_cycle_consistency=frozen_array(self.activation_cycle_consistency),
              triples=tuple(tuple(int(k) for k in t) for t in self.triples),
              settings=None if self.settings is None else dict(self.settings))

  def to_json(self) -> dict:
    doc = {"triples": [list(t) for t in self.triples],
           "weight_cycle_consistency": floats(self.weight_cycle_consistency),
           "activation_cycle_consistency": floats(self.activation_cycle_consistency),
           "weight_restarts": self.weight_restarts.to_json()}
    if self.settings is not None:
      doc["settings"] = dict(self.settings)
    return doc

  @classmethod
  def read(cls, c: Checker, doc, field: str = "diagnostics") -> "Diagnostics":
    c.obj(doc, field)
    settings = c.obj(c.get(doc, "settings", f"{field}.settings"), f"{field}.settings")
    cycles = []
    for name in ("weight_cycle_consistency", "activation_cycle_consistency"):
      cycles.append(c.numbers(c.get(doc, name, f"{field}.{name}"), f"{field}.{name}"))
    restarts = WeightRestarts.read(c, c.get(doc, "weight_restarts", f"{field}.weight_restarts"),
                                   f"{field}.weight_restarts")
    triples = []
    for k, t in enumerate(c.seq(doc.get("triples", []), f"{field}.triples")):
      c.seq(t, f"{field}.triples[{k}]", 3)
      triples.append(c.integers(t, f"{field}.triples[{k}]"))
    return cls(*cycles, restarts, tuple(triples), settings)


@dataclasses.dataclass(frozen=True, eq=False)
class BarrierResult(Record):
  """barrier.json: the curves of one zoo at `alphas` `(A,)` on `split`, naive (and after
  REPAIR) and after each alignment method to `reference`, in the order they ran; which
  models were left out (`excluded`, diverged) and which are at chance (`collapsed`); how
  BatchNorm statistics were reset and the matmuls' precision; optional diagnostics; the
  seconds the naive sweep took, the zoo's params checksum and the package versions."""
  alphas: np.ndarray
  naive: CurveSet
  methods: Tuple[MethodEntry, ...] = ()
  naive_repaired: Optional[RepairEntry] = None
  reference: Optional[int] = None
  split: str = "test"
  precision: str = "fp32"
  bn_reset: Optional[BnReset] = None
  excluded: Tuple[int, ...] = ()
  collapsed: Tuple[int, ...] = ()
  diagnostics: Optional[Diagnostics] = None
  seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
  params_sha256: Optional[str] = None
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
  zoo: str = ""
  naive_calibrated: Optional[CalibrationEntry] = None
  FIX = staticmethod(barrier_fix)

  def __post_init__(self):
    names = [m.name for m in self.methods]
    if len(set(names)) != len(names):
      raise ValueError(f"BarrierResult holds a method twice: {names}")
    self._set(alphas=frozen_array(self.alphas), methods=tuple(self.methods),
              excluded=tuple(int(k) for k in self.excluded),
              collapsed=tuple(int(k) for k in self.collapsed),
              seconds=dict(self.seconds), versions=dict(self.versions))

  @property
  def method_names(self) -> Tuple[str, ...]:
    return tuple(m.name for m in self.methods)

  def method(self, name: str) -> Optional[MethodEntry]:
    """The entry of method `name` ('aligned': weight matching's), or None."""
    name = "weight" if name == "aligned" else name
    return next((m for m in self.methods if m.name == name), None)

  def curves(self, name: str, repaired: bool = False) -> Optional[CurveSet]:
    """The curves of 'naive', 'aligned' (weight matching to the reference: the study's
    measure) or a method, after REPAIR if `repaired`; None where they were not measured
    (or the method, or REPAIR, was skipped)."""
    if repaired:
      entry = self.repaired(name)
      return None if entry is None else entry.curves
    if name == "naive":
      return self.naive
    entry = self.method(name)
    return None if entry is None else entry.curves

  def repaired(self, name: str) -> Optional[RepairEntry]:
    """REPAIR of the curves `curves(name)` gives, or None where it was not measured."""
    if name == "naive":
      return self.naive_repaired
    entry = self.method(name)
    return None if entry is None else entry.repaired

  def calibrated(self, name: str) -> Optional[CalibrationEntry]:
    """The temperature-calibrated curves of 'naive', 'aligned' or a method, or None where
    they were not measured."""
    if name == "naive":
      return self.naive_calibrated
    entry = self.method(name)
    return None if entry is None else entry.calibrated

  def with_calibrated(self, name: str, entry: CalibrationEntry) -> "BarrierResult":
    """This result with `entry` as the calibrated curves of 'naive' or of method `name`."""
    if name == "naive":
      return self.replace(naive_calibrated=entry)
    return self.with_method(dataclasses.replace(self.method(name), calibrated=entry))

  def replace(self, **changes) -> "BarrierResult":
    return dataclasses.replace(self, **changes)

  def with_method(self, entry: MethodEntry) -> "BarrierResult":
    """This result with `entry` in place of the method of its name (or after the others)."""
    methods = [entry if m.name == entry.name else m for m in self.methods]
    if entry.name not in self.method_names:
      methods.append(entry)
    return self.replace(methods=tuple(methods))

  def with_repaired(self, name: str, repair: RepairEntry) -> "BarrierResult":
    """This result with `repair` as REPAIR of 'naive' or of method `name`."""
    if name == "naive":
      return self.replace(naive_repaired=repair)
    return self.with_method(dataclasses.replace(self.method(name), repaired=repair))

  def to_json(self) -> dict:
    naive = self.naive.to_json()
    if self.naive_repaired is not None:
      naive["repaired"] = self.naive_repaired.to_json()
    if self.naive_calibrated is not None:
      naive["calibrated"] = self.naive_calibrated.to_json()
    doc = {"format": BARRIER_FORMAT, "zoo": self.zoo, "split": self.split,
           "bn_reset": None if self.bn_reset is None else self.bn_reset.to_json(),
           "precision": self.precision}
    if self.reference is not None:
      doc["reference"] = self.reference
    doc.update(alphas=floats(self.alphas), excluded=list(self.excluded), naive=naive,
               methods={m.name: m.to_json() for m in self.methods}, seconds=dict(self.seconds),
               collapsed=list(self.collapsed), versions=dict(self.versions))
    if self.params_sha256 is not None:
      doc["params_sha256"] = self.params_sha256
    if self.diagnostics is not None:
      doc["diagnostics"] = self.diagnostics.to_json()
    return doc

  @classmethod
  def read(cls, c: Checker, doc, num_models: Optional[int] = None,
           perm_sizes: Optional[Dict[str, int]] = None) -> "BarrierResult":
    """Pairs of models in 0..num_models-1 and each method's permutations of the sizes
    `perm_sizes` (name -> units), where given; every format this version knows."""
    c.obj(doc, "the file")
    found = c.format(doc)
    check_format(doc, c.path, BARRIER_FORMAT)
    alphas = c.seq(c.get(doc, "alphas"), "alphas")
    if not alphas:
      c.fail("alphas", "is empty")
    alphas = [c.number(a, f"alphas[{k}]") for k, a in enumerate(alphas)]
    hi = None if num_models is None else num_models - 1
    reference = _optional(doc, "reference", "reference", lambda v, f: c.integer(v, f, 0, hi))
    sizes = dict(num_alphas=len(alphas), num_models=num_models)
    naive_doc = c.get(doc, "naive")
    naive = CurveSet.read(c, naive_doc, "naive", **sizes)
    methods_doc = c.obj(doc.get("methods", {}), "methods")
    if found >= 3:
      naive_repaired = _optional(naive_doc, "repaired", "naive.repaired",
                                 lambda v, f: RepairEntry.read(c, v, f, **sizes))
      methods = []
      for name, entry in methods_doc.items():
        if name.endswith(LEGACY_REPAIR):
          c.fail(f"methods.{name}", f"is an entry of format 2, not {found} (REPAIR's curves are "
                 "the 'repaired' field of their method's entry)")
        methods.append(MethodEntry.read(c, entry, f"methods.{name}", name, perm_sizes=perm_sizes,
                                        **sizes))
    else:
      methods, naive_repaired = _legacy_methods(c, doc, methods_doc, perm_sizes, **sizes)
    return cls(
        alphas, naive, tuple(methods), naive_repaired, reference,
        c.string(doc.get("split", "test"), "split"),
        c.string(doc.get("precision", "fp32"), "precision"),
        _optional(doc, "bn_reset", "bn_reset", lambda v, f: BnReset.read(c, v, f)),
        c.integers(doc.get("excluded", []), "excluded"),
        c.integers(doc.get("collapsed", []), "collapsed"),
        _optional(doc, "diagnostics", "diagnostics", lambda v, f: Diagnostics.read(c, v, f)),
        {k: c.number_or_null(v, f"seconds.{k}")
         for k, v in c.obj(doc.get("seconds", {}), "seconds").items()},
        _optional(doc, "params_sha256", "params_sha256", c.string), versions_of(c, doc),
        c.string(doc.get("zoo", ""), "zoo"),
        _optional(naive_doc, "calibrated", "naive.calibrated",
                  lambda v, f: CalibrationEntry.read(c, v, f, **sizes)))


def _legacy_methods(c: Checker, doc: dict, methods_doc: dict, perm_sizes, num_alphas: int,
                    num_models: Optional[int]):
  """(method entries, naive's REPAIR) of a format 1 or 2 barrier.json: weight matching's
  curves from "aligned", REPAIR's from the "<name>+repair" entries."""
  sizes = dict(num_alphas=num_alphas, num_models=num_models)
  aligned = _optional(doc, "aligned", "aligned", lambda v, f: CurveSet.read(c, v, f, **sizes))
  methods, repairs = [], {}
  for name, entry in methods_doc.items():
    field = f"methods.{name}"
    if name.endswith(LEGACY_REPAIR):
      repairs[name[:-len(LEGACY_REPAIR)]] = RepairEntry.read(c, entry, field, **sizes)
      continue
    method = MethodEntry.read(c, entry, field, name, perm_sizes=perm_sizes,
                              curves=name != "weight", **sizes)
    if name == "weight" and method.skipped is None:
      if aligned is None:
        c.fail("aligned", "is missing though methods.weight is there")
      method = dataclasses.replace(method, curves=aligned)
    methods.append(method)
  if aligned is not None and "weight" not in methods_doc:  # from before "methods" existed
    methods.insert(0, MethodEntry("weight", curves=aligned))
  by_name = {m.name: k for k, m in enumerate(methods)}
  for name, repair in repairs.items():
    if name != "naive" and name not in by_name:
      c.fail(f"methods.{name}{LEGACY_REPAIR}", f"is there but methods.{name} is not")
    if name != "naive":
      methods[by_name[name]] = dataclasses.replace(methods[by_name[name]], repaired=repair)
  return methods, repairs.get("naive")
