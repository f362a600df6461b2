"""Checking a JSON document lmc_jax wrote as it is read back: the machinery the records'
`from_json` (`lmc_jax.records`) is built from.

A file that parses but is wrong (a hand edit, another tool's output, a half-understood
older version) is refused with one sentence naming the file, the field and the fix, rather
than failing later with a KeyError or, worse, being used. `SchemaError` (an `LmcError`)
carries the field and the problem apart, for a caller that recomputes instead of refusing
(a stale barrier.json).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from lmc_jax.errors import LmcError


class SchemaError(LmcError):
  """A file that parses but does not hold what it should."""

  def __init__(self, path, field: str, problem: str, fix: str):
    self.path, self.field, self.problem = Path(path), field, problem
    super().__init__(f"{path}: {field} {problem}; {fix}.")

  @property
  def what(self) -> str:
    """`field problem`, without the file and the fix."""
    return f"{self.field} {self.problem}"


def is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def show(x) -> str:
  """A value as an error message quotes it (long ones shortened)."""
  text = repr(x)
  return text if len(text) <= 40 else text[:37] + "..."


def file_format(doc) -> object:
  """The `format` a JSON document records: 1 for one written before formats were recorded
  (or not a JSON object); whatever else it holds, unchecked (see `Checker.format`)."""
  return doc.get("format", 1) if isinstance(doc, dict) else 1


def check_format(doc, path, newest: int):
  """`doc` (read from `path`) unless its format is newer than `newest`; files from before
  formats were recorded count as format 1."""
  found = file_format(doc)
  if not is_int(found) or found > newest:
    raise LmcError(f"{path} has format {found!r}, newer than the {newest} this lmc_jax reads; "
                   "upgrade lmc_jax (pip install -U lmc_jax), or write the file again with "
                   "this version.")
  return doc


class Checker:
  """Reads the fields of one file, raising `SchemaError` with the file's `fix` for the
  first one that is missing or wrong. Each method returns the value it checked (numbers
  lists as float64 arrays, null as NaN: JSON's spelling of a non-finite value)."""

  def __init__(self, path, fix: str):
    self.path, self.fix = path, fix

  def fail(self, field: str, problem: str):
    raise SchemaError(self.path, field, problem, self.fix)

  def obj(self, value, field: str) -> dict:
    if not isinstance(value, dict):
      self.fail(field, f"is {show(value)}, not a JSON object")
    return value

  def seq(self, value, field: str, length: Optional[int] = None) -> list:
    if not isinstance(value, list):
      self.fail(field, f"is {show(value)}, not a list")
    if length is not None and len(value) != length:
      self.fail(field, f"has {len(value)} entries, expected {length}")
    return value

  def integer(self, value, field: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if not is_int(value):
      self.fail(field, f"is {show(value)}, not an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
      self.fail(field, f"is {value}, outside {span}")
    return value

  def integers(self, value, field: str) -> tuple:
    return tuple(self.integer(v, f"{field}[{k}]") for k, v in enumerate(self.seq(value, field)))

  def string(self, value, field: str) -> str:
    if not isinstance(value, str):
      self.fail(field, f"is {show(value)}, not a string")
    return value

  def boolean(self, value, field: str) -> bool:
    if not isinstance(value, bool):
      self.fail(field, f"is {show(value)}, not true or false")
    return value

  def get(self, doc: dict, key: str, field: Optional[str] = None):
    if key not in doc:
      self.fail(field or key, "is missing")
    return doc[key]

  def number(self, value, field: str) -> float:
    """A finite number."""
    if not is_number(value) or not math.isfinite(value):
      self.fail(field, f"is {show(value)}, not a finite number")
    return float(value)

  def number_or_null(self, value, field: str) -> float:
    """A number, or null for a non-finite one (NaN)."""
    if value is not None and not is_number(value):
      self.fail(field, f"is {show(value)}, not a number or null")
    return float("nan") if value is None else float(value)

  def numbers(self, value, field: str, length: Optional[int] = None) -> np.ndarray:
    """A list of `length` numbers or nulls `(length,)`."""
    return np.asarray([self.number_or_null(v, f"{field}[{k}]")
                       for k, v in enumerate(self.seq(value, field, length))], np.float64)

  def matrix(self, value, field: str, rows: Optional[int] = None,
             cols: Optional[int] = None) -> np.ndarray:
    """A list of `rows` lists of `cols` numbers or nulls `(rows, cols)` (`cols`, where not
    given, is the first row's length)."""
    value = self.seq(value, field, rows)
    if cols is None:
      cols = len(self.seq(value[0], f"{field}[0]")) if value else 0
    out = np.zeros((len(value), cols))
    for k, row in enumerate(value):
      out[k] = self.numbers(row, f"{field}[{k}]", cols)
    return out

  def format(self, doc: dict) -> int:
    """The file's format (1 where it records none); not an integer >= 1 is refused."""
    if "format" in doc:
      return self.integer(doc["format"], "format", 1)
    return 1
