"""What a JSON file lmc_jax wrote must hold when it is read back: zoo.json and barrier.json.

A file that parses but is wrong (a hand edit, another tool's output, a half-understood
older version) is refused with one sentence naming the file, the field and the fix, rather
than failing later with a KeyError or, worse, being used. Each check returns the document
unchanged; `SchemaError` (an `LmcError`) carries the field and the problem apart, for a
caller that recomputes instead of refusing (a stale barrier.json).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from lmc_jax.config import ConfigError, ZooConfig
from lmc_jax.errors import LmcError

METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")  # per model in zoo.json
CURVE_MEASURES = ("epsilon", "barrier", "rebasin_barrier")  # per pair in barrier.json
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SchemaError(LmcError):
  """A file that parses but does not hold what it should."""

  def __init__(self, path, field: str, problem: str, fix: str):
    self.path, self.field, self.problem = Path(path), field, problem
    super().__init__(f"{path}: {field} {problem}; {fix}.")

  @property
  def what(self) -> str:
    """`field problem`, without the file and the fix."""
    return f"{self.field} {self.problem}"


def zoo_fix(path) -> str:
  """How to replace a bad zoo.json at `path`."""
  return (f"train the zoo again with `python -m experiments.zoo --out={Path(path).parent.parent}"
          " ... --overwrite` (the flags it was trained with)")


def barrier_fix(path) -> str:
  """How to replace a bad barrier.json at `path`."""
  return f"recompute it with `python -m experiments.barrier --zoo={Path(path).parent} --recompute`"


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _show(x) -> str:
  """A value as an error message quotes it (long ones shortened)."""
  text = repr(x)
  return text if len(text) <= 40 else text[:37] + "..."


class _Checker:
  """Raises `SchemaError` for one file, with its fix."""

  def __init__(self, path, fix: str):
    self.path, self.fix = path, fix

  def fail(self, field: str, problem: str):
    raise SchemaError(self.path, field, problem, self.fix)

  def obj(self, value, field: str) -> dict:
    if not isinstance(value, dict):
      self.fail(field, f"is {_show(value)}, not a JSON object")
    return value

  def seq(self, value, field: str, length: Optional[int] = None) -> list:
    if not isinstance(value, list):
      self.fail(field, f"is {_show(value)}, not a list")
    if length is not None and len(value) != length:
      self.fail(field, f"has {len(value)} entries, expected {length}")
    return value

  def integer(self, value, field: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if not _is_int(value):
      self.fail(field, f"is {_show(value)}, not an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
      self.fail(field, f"is {value}, outside {span}")
    return value

  def get(self, doc: dict, key: str, field: Optional[str] = None):
    if key not in doc:
      self.fail(field or key, "is missing")
    return doc[key]

  def number(self, value, field: str) -> None:
    if not _is_number(value) or not math.isfinite(value):
      self.fail(field, f"is {_show(value)}, not a finite number")

  def numbers(self, value, field: str, length: int) -> None:
    """A list of `length` numbers or nulls (a non-finite value is written as null)."""
    for k, v in enumerate(self.seq(value, field, length)):
      if v is not None and not _is_number(v):
        self.fail(f"{field}[{k}]", f"is {_show(v)}, not a number or null")

  def format(self, doc: dict) -> None:
    if "format" in doc:
      self.integer(doc["format"], "format", 1)


def check_zoo_doc(doc, path) -> dict:
  """`doc`, read from the zoo.json at `path`, unless a field is missing or wrong: the
  config (one `ZooConfig` accepts and validates), params_sha256, num_models and one metrics
  dict per model."""
  c = _Checker(path, zoo_fix(path))
  c.obj(doc, "the file")
  c.format(doc)
  config = _check_config(c, c.get(doc, "config"))
  sha = c.get(doc, "params_sha256")
  if not (isinstance(sha, str) and _HEX64.fullmatch(sha)):
    c.fail("params_sha256", f"is {_show(sha)}, not the 64 hex digits of a SHA-256")
  n = c.integer(c.get(doc, "num_models"), "num_models", 1)
  if n != config.train.num_models:
    c.fail("num_models", f"is {n} but config.train.num_models is {config.train.num_models}")
  models = c.seq(c.get(doc, "models"), "models")
  if len(models) != n:
    c.fail("models", f"has {len(models)} entries but num_models is {n}")
  for k, m in enumerate(models):
    c.obj(m, f"models[{k}]")
    diverged = c.get(m, "diverged", f"models[{k}].diverged")
    if not isinstance(diverged, bool):
      c.fail(f"models[{k}].diverged", f"is {_show(diverged)}, not true or false")
    if not isinstance(m.get("collapsed", False), bool):
      c.fail(f"models[{k}].collapsed", f"is {_show(m['collapsed'])}, not true or false")
    for key in METRICS:
      field = f"models[{k}].{key}"
      value = c.get(m, key, field)
      if not diverged:  # a non-finite metric marks a model diverged
        if value is None:
          c.fail(field, "is null but the model is not marked diverged")
        c.number(value, field)
      elif value is not None and not _is_number(value):
        c.fail(field, f"is {_show(value)}, not a number or null")
  if not isinstance(doc.get("data_source", ""), (str, type(None))):
    c.fail("data_source", f"is {_show(doc['data_source'])}, not a string")
  return doc


def _check_config(c: _Checker, config) -> ZooConfig:
  """The `ZooConfig` of zoo.json's config (its sections, or the flat dict of format 1),
  every field checked by the config itself."""
  c.obj(config, "config")
  try:
    return ZooConfig.from_dict(config).validate()
  except ConfigError as e:
    c.fail(f"config.{e.field}" if e.field != "config" else "config", e.problem)
  except (TypeError, ValueError) as e:  # a value a section cannot even be built from
    c.fail("config", f"does not make a config ({e})")


def check_barrier_doc(doc, path, num_models: Optional[int] = None,
                      perm_sizes: Optional[Dict[str, int]] = None) -> dict:
  """`doc`, read from the barrier.json at `path`, unless a field is missing or wrong: the
  alphas, every set of curves (pairs of models in 0..num_models-1, loss and acc per pair
  and alpha, each measure per pair), and every method's permutations (one dict per model,
  each value a permutation of 0..n-1; n from `perm_sizes` where given, whose names each
  dict must hold)."""
  c = _Checker(path, barrier_fix(path))
  c.obj(doc, "the file")
  c.format(doc)
  alphas = c.seq(c.get(doc, "alphas"), "alphas")
  if not alphas:
    c.fail("alphas", "is empty")
  for k, a in enumerate(alphas):
    c.number(a, f"alphas[{k}]")
  if "reference" in doc:
    c.integer(doc["reference"], "reference", 0, None if num_models is None else num_models - 1)
  _check_curves(c, c.get(doc, "naive"), "naive", len(alphas), num_models)
  if "aligned" in doc:
    _check_curves(c, doc["aligned"], "aligned", len(alphas), num_models)
  methods = c.obj(doc.get("methods", {}), "methods")
  for name, entry in methods.items():
    field = f"methods.{name}"
    c.obj(entry, field)
    if "skipped" in entry:
      if not isinstance(entry["skipped"], str):
        c.fail(f"{field}.skipped", f"is {_show(entry['skipped'])}, not a string")
      continue
    if name == "weight":  # its curves are 'aligned'
      if "aligned" not in doc:
        c.fail("aligned", "is missing though methods.weight is there")
    else:
      _check_curves(c, entry, field, len(alphas), num_models)
    if "settings" in entry:
      c.obj(entry["settings"], f"{field}.settings")
    if "perms" in entry:
      _check_perms(c, entry["perms"], f"{field}.perms", num_models, perm_sizes)
  if "diagnostics" in doc:
    _check_diagnostics(c, doc["diagnostics"])
  return doc


def _check_diagnostics(c: _Checker, diag) -> None:
  """The fields of `alignment_diagnostics` the report reads."""
  c.obj(diag, "diagnostics")
  c.obj(c.get(diag, "settings", "diagnostics.settings"), "diagnostics.settings")
  for name in ("weight_cycle_consistency", "activation_cycle_consistency"):
    field = f"diagnostics.{name}"
    value = c.get(diag, name, field)
    c.numbers(value, field, len(c.seq(value, field)))
  restarts = c.obj(c.get(diag, "weight_restarts", "diagnostics.weight_restarts"),
                   "diagnostics.weight_restarts")
  for name in ("median_epsilon_spread", "max_epsilon_spread"):
    value = c.get(restarts, name, f"diagnostics.weight_restarts.{name}")
    if value is not None:
      c.number(value, f"diagnostics.weight_restarts.{name}")


def _check_curves(c: _Checker, entry, field: str, num_alphas: int,
                  num_models: Optional[int]) -> None:
  c.obj(entry, field)
  pairs = c.seq(c.get(entry, "pairs", f"{field}.pairs"), f"{field}.pairs")
  hi = None if num_models is None else num_models - 1
  for k, pair in enumerate(pairs):
    where = f"{field}.pairs[{k}]"
    if not (isinstance(pair, list) and len(pair) == 2):
      c.fail(where, f"is {_show(pair)}, not a pair [i, j]")
    c.integer(pair[0], where, 0, hi)
    c.integer(pair[1], where, 0, hi)
  for key in ("loss", "acc"):
    rows = c.seq(c.get(entry, key, f"{field}.{key}"), f"{field}.{key}", len(pairs))
    for k, row in enumerate(rows):
      c.numbers(row, f"{field}.{key}[{k}]", num_alphas)
  for key in CURVE_MEASURES:
    c.numbers(c.get(entry, key, f"{field}.{key}"), f"{field}.{key}", len(pairs))


def _check_perms(c: _Checker, perms, field: str, num_models: Optional[int],
                 sizes: Optional[Dict[str, int]]) -> None:
  c.seq(perms, field, num_models)
  for k, perm in enumerate(perms):
    c.obj(perm, f"{field}[{k}]")
    if sizes is not None and set(perm) != set(sizes):
      c.fail(f"{field}[{k}]", f"names permutations {sorted(perm)}, not the network's "
             f"{sorted(sizes)}")
    for name, value in perm.items():
      where = f"{field}[{k}].{name}"
      n = sizes[name] if sizes is not None else (len(value) if isinstance(value, list) else 0)
      c.seq(value, where, n)
      if not all(_is_int(v) for v in value) or not np.array_equal(np.sort(value), np.arange(n)):
        c.fail(where, f"is not a permutation of 0..{n - 1}")

