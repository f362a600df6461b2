"""Typed records of what lmc_jax's result files hold: here zoo.json, a set of curves and a
checkpoint's meta document; barrier.json's in `lmc_jax.barrier_records`, those of the
study's other experiments (swa.json, plane.json, redundancy.json, dynamics) in
`lmc_jax.study_records`.

Every record is a small frozen dataclass. `Record.from_json(doc, path)` is the file's
schema check: it returns the record or refuses the document with one sentence naming the
file, the field and the fix (`schema.SchemaError`). `record.to_json()` is the writer: a
JSON-ready dict (non-finite numbers stay NaN there; `atomic_files.atomic_write_json`
writes them as null, which `from_json` reads back as NaN). Arrays in a record are numpy
arrays that can not be written to; two records are equal when every field is, arrays by
value and NaN equal to NaN. Nothing else in lmc_jax reads a result document by key.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Mapping, Optional, Tuple

import numpy as np

from lmc_jax.config import ConfigError, ZooConfig
from lmc_jax.result_files import CHECKPOINT_FORMAT, ZOO_FORMAT
from lmc_jax.schema import Checker, check_format, show

# The measures of one curve, per pair, in every set of curves (lmc.measures has their
# formulas); the study's own is epsilon.
MEASURE_NAMES = ("epsilon", "barrier", "rebasin_barrier")
# One model's final metrics in zoo.json.
METRIC_NAMES = ("train_loss", "test_loss", "train_acc", "test_acc")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def zoo_fix(path) -> str:
  """How to replace a bad zoo.json at `path`."""
  return (f"train the zoo again with `python -m experiments.zoo --out={Path(path).parent.parent}"
          " ... --overwrite` (the flags it was trained with)")


def rewrite_fix(path) -> str:
  """How to replace any other result file at `path`."""
  return f"write {Path(path).name} again with the lmc_jax command that made it"


def same(a, b) -> bool:
  """Equality of record fields: arrays by shape and value, NaN equal to NaN, containers
  element by element."""
  if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    a, b = np.asarray(a), np.asarray(b)
    numeric = a.dtype.kind in "biuf" and b.dtype.kind in "biuf"
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=numeric))
  if isinstance(a, float) and isinstance(b, float):
    return a == b or (math.isnan(a) and math.isnan(b))
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
  return a == b


def frozen_array(value, dtype=None) -> np.ndarray:
  """A read-only copy of `value` as a numpy array of `dtype` (None: floats keep their
  precision, anything else becomes float64)."""
  a = np.array(value, dtype=dtype)
  if dtype is None and a.dtype.kind != "f":
    a = a.astype(np.float64)
  a.flags.writeable = False
  return a


def floats(a: np.ndarray) -> list:
  """An array as JSON-ready nested lists of floats (NaN kept, see the module docstring)."""
  return np.asarray(a, np.float64).tolist()


class Record:
  """What every record shares: equality by value (see `same`) and `from_json`, which
  checks the document with the fix of the file it came from (`FIX(path)`)."""
  FIX = staticmethod(rewrite_fix)

  def __eq__(self, other):
    if type(other) is not type(self):
      return NotImplemented
    return all(same(getattr(self, f.name), getattr(other, f.name))
               for f in dataclasses.fields(self))

  __hash__ = None

  def _set(self, **values) -> None:
    """Field values normalised in `__post_init__` (the dataclass is frozen)."""
    for name, value in values.items():
      object.__setattr__(self, name, value)

  @classmethod
  def from_json(cls, doc, path, *context, **named):
    """The record of `doc`, read from the file at `path` (what else the record's `read`
    takes follows); refuses a wrong one (`SchemaError`) in one sentence naming the file,
    the field and the fix."""
    return cls.read(Checker(path, cls.FIX(path)), doc, *context, **named)


def recorded_params_sha256(path) -> Optional[str]:
  """The params checksum the zoo.json at `path` records now, read alone (no schema check:
  a lock's quick look at whether the zoo was replaced); None where it cannot be read."""
  try:
    doc = json.loads(Path(path).read_text())
  except (OSError, ValueError):
    return None
  value = doc.get("params_sha256") if isinstance(doc, dict) else None
  return value if isinstance(value, str) else None


def read_config(c: Checker, doc) -> ZooConfig:
  """A zoo's config (its sections, or the flat dict of format 1), every field checked by
  the config itself; a bad field is named `config.<section>.<field>`."""
  c.obj(doc, "config")
  try:
    return ZooConfig.from_dict(doc).validate()
  except ConfigError as e:
    c.fail(f"config.{e.field}" if e.field != "config" else "config", e.problem)
  except (TypeError, ValueError) as e:  # a value a section cannot even be built from
    c.fail("config", f"does not make a config ({e})")


def versions_of(c: Checker, doc: dict) -> dict:
  return dict(c.obj(doc.get("versions", {}), "versions"))


@dataclasses.dataclass(frozen=True, eq=False)
class ModelMetrics(Record):
  """One model of zoo.json: final loss and accuracy on each split (NaN where it diverged),
  `diverged` (a non-finite loss: left out of every statistic) and `collapsed` (test
  accuracy at chance: counted, kept in the statistics). `m["test_acc"]` reads a field by
  name, as the dicts this record replaces were read."""
  train_loss: float
  test_loss: float
  train_acc: float
  test_acc: float
  diverged: bool = False
  collapsed: bool = False
  FIX = staticmethod(zoo_fix)

  def __getitem__(self, name: str):
    if name not in METRIC_NAMES + ("diverged", "collapsed"):
      raise KeyError(name)
    return getattr(self, name)

  def to_json(self) -> dict:
    return {**{k: float(getattr(self, k)) for k in METRIC_NAMES}, "diverged": self.diverged,
            "collapsed": self.collapsed}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "models[0]") -> "ModelMetrics":
    c.obj(doc, field)
    diverged = c.boolean(c.get(doc, "diverged", f"{field}.diverged"), f"{field}.diverged")
    collapsed = c.boolean(doc.get("collapsed", False), f"{field}.collapsed")
    values = {}
    for key in METRIC_NAMES:
      where = f"{field}.{key}"
      value = c.get(doc, key, where)
      if not diverged and value is None:  # a non-finite metric marks a model diverged
        c.fail(where, "is null but the model is not marked diverged")
      values[key] = c.number(value, where) if not diverged else c.number_or_null(value, where)
    return cls(**values, diverged=diverged, collapsed=collapsed)


@dataclasses.dataclass(frozen=True, eq=False)
class ZooRecord(Record):
  """zoo.json: the config, the checksum of params.npz, one `ModelMetrics` per model, the
  package versions, the history file's name (None: none saved), the seconds training took
  and how the data is labelled (`data_source`, '' for the dataset's own name), and the
  training examples per class it saw (`train_class_counts`, after its subset and
  `config.data.train_split`; None in zoos written before it was recorded)."""
  config: ZooConfig
  params_sha256: str
  models: Tuple[ModelMetrics, ...]
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
  history: Optional[str] = None
  train_seconds: Optional[float] = None
  data_source: str = ""
  train_class_counts: Optional[Tuple[int, ...]] = None
  FIX = staticmethod(zoo_fix)

  def __post_init__(self):
    self._set(models=tuple(self.models), versions=dict(self.versions))
    if self.train_class_counts is not None:
      self._set(train_class_counts=tuple(self.train_class_counts))

  @property
  def num_models(self) -> int:
    return len(self.models)

  @property
  def seed(self) -> int:
    return self.config.train.seed

  @property
  def usable(self) -> Tuple[int, ...]:
    """Models that did not diverge."""
    return tuple(k for k, m in enumerate(self.models) if not m.diverged)

  @property
  def diverged(self) -> Tuple[int, ...]:
    return tuple(k for k, m in enumerate(self.models) if m.diverged)

  @property
  def collapsed(self) -> Tuple[int, ...]:
    """Usable models at chance accuracy."""
    return tuple(k for k, m in enumerate(self.models) if m.collapsed and not m.diverged)

  @property
  def mean_test_loss(self) -> float:
    """Over the usable models (NaN if none)."""
    losses = [self.models[k].test_loss for k in self.usable]
    return float(np.mean(losses)) if losses else float("nan")

  @property
  def data_name(self) -> str:
    """The name tables and figures show: the data's label, else the config's dataset."""
    return self.data_source or self.config.data.dataset

  def to_json(self) -> dict:
    doc = {"format": ZOO_FORMAT, "config": self.config.to_dict(), "seed": self.seed,
           "versions": dict(self.versions), "params_sha256": self.params_sha256,
           "num_models": self.num_models, "models": [m.to_json() for m in self.models]}
    if self.history is not None:
      doc["history"] = self.history
    if self.train_seconds is not None:
      doc["train_seconds"] = self.train_seconds
    if self.data_source:
      doc["data_source"] = self.data_source
    if self.train_class_counts is not None:
      doc["train_class_counts"] = list(self.train_class_counts)
    return doc

  @classmethod
  def read(cls, c: Checker, doc) -> "ZooRecord":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, ZOO_FORMAT)
    config = read_config(c, c.get(doc, "config"))
    sha = c.get(doc, "params_sha256")
    if not (isinstance(sha, str) and _HEX64.fullmatch(sha)):
      c.fail("params_sha256", f"is {show(sha)}, not the 64 hex digits of a SHA-256")
    n = c.integer(c.get(doc, "num_models"), "num_models", 1)
    if n != config.train.num_models:
      c.fail("num_models", f"is {n} but config.train.num_models is {config.train.num_models}")
    models = c.seq(c.get(doc, "models"), "models")
    if len(models) != n:
      c.fail("models", f"has {len(models)} entries but num_models is {n}")
    metrics = [ModelMetrics.read(c, m, f"models[{k}]") for k, m in enumerate(models)]
    source = doc.get("data_source") or ""
    history = doc.get("history")
    seconds = doc.get("train_seconds")
    counts = doc.get("train_class_counts")
    if counts is not None:
      counts = c.integers(counts, "train_class_counts")
      if any(k < 0 for k in counts):
        c.fail("train_class_counts", f"holds a negative count ({list(counts)})")
    return cls(config, sha, tuple(metrics), versions_of(c, doc),
               None if history is None else c.string(history, "history"),
               None if seconds is None else c.number_or_null(seconds, "train_seconds"),
               c.string(source, "data_source"), counts)


@dataclasses.dataclass(frozen=True, eq=False)
class CurveSet(Record):
  """One set of curves: `pairs` `(P, 2)` of models, `loss` and `acc` `(P, A)` at the
  alphas of the file that holds it, and each measure of `MEASURE_NAMES` per pair `(P,)`
  in `measures`. In JSON the measures sit beside the curves, one key each."""
  pairs: np.ndarray
  loss: np.ndarray
  acc: np.ndarray
  measures: Mapping[str, np.ndarray]

  def __post_init__(self):
    if set(self.measures) != set(MEASURE_NAMES):
      raise ValueError(f"CurveSet needs the measures {MEASURE_NAMES}, got {sorted(self.measures)}")
    self._set(pairs=frozen_array(self.pairs, np.int64).reshape(-1, 2),
              loss=frozen_array(self.loss), acc=frozen_array(self.acc),
              measures={k: frozen_array(self.measures[k]) for k in MEASURE_NAMES})

  @property
  def epsilon(self) -> np.ndarray:
    """The study's measure per pair `(P,)`."""
    return self.measures["epsilon"]

  def measure(self, name: str) -> np.ndarray:
    return self.measures[name]

  def involving(self, model: Optional[int]) -> np.ndarray:
    """`(P,)` bool: the pairs that hold `model` (none for None)."""
    return (self.pairs == model).any(axis=1) if model is not None else \
        np.zeros(len(self.pairs), bool)

  def to_json(self) -> dict:
    return {"pairs": self.pairs.tolist(), "loss": floats(self.loss), "acc": floats(self.acc),
            **{k: floats(self.measures[k]) for k in MEASURE_NAMES}}

  @classmethod
  def read(cls, c: Checker, doc, field: str = "curves", num_alphas: Optional[int] = None,
           num_models: Optional[int] = None) -> "CurveSet":
    """The curves of `doc` (a JSON object that may hold other keys too); every pair's
    models in 0..num_models-1 and every curve `num_alphas` long, where given."""
    c.obj(doc, field)
    pairs = c.seq(c.get(doc, "pairs", f"{field}.pairs"), f"{field}.pairs")
    hi = None if num_models is None else num_models - 1
    for k, pair in enumerate(pairs):
      where = f"{field}.pairs[{k}]"
      if not (isinstance(pair, list) and len(pair) == 2):
        c.fail(where, f"is {show(pair)}, not a pair [i, j]")
      c.integer(pair[0], where, 0, hi)
      c.integer(pair[1], where, 0, hi)
    curves = {k: c.matrix(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}", len(pairs), num_alphas)
              for k in ("loss", "acc")}
    measures = {k: c.numbers(c.get(doc, k, f"{field}.{k}"), f"{field}.{k}", len(pairs))
                for k in MEASURE_NAMES}
    return cls(pairs, curves["loss"], curves["acc"], measures)


@dataclasses.dataclass(frozen=True, eq=False)
class CheckpointMeta(Record):
  """The `meta` document of a training checkpoint (`zoo.checkpoint`): the config it
  trains, the epochs done, the models trained (padding included), how many leaves follow
  and their SHA-256."""
  config: ZooConfig
  epoch: int
  models: int
  leaves: int
  sha256: str

  def to_json(self) -> dict:
    return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "epoch": self.epoch,
            "models": self.models, "leaves": self.leaves, "sha256": self.sha256}

  @classmethod
  def read(cls, c: Checker, doc) -> "CheckpointMeta":
    c.obj(doc, "the file")
    c.format(doc)
    check_format(doc, c.path, CHECKPOINT_FORMAT)
    return cls(read_config(c, c.get(doc, "config")),
               c.integer(c.get(doc, "epoch"), "epoch", 0),
               c.integer(c.get(doc, "models"), "models", 1),
               c.integer(c.get(doc, "leaves"), "leaves", 0),
               c.string(c.get(doc, "sha256"), "sha256"))
