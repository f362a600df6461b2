"""Which steps of a reproduction already ran, so that an interrupted one resumes.

The ledger (`<report folder>/steps.json`) holds one record per finished step: its command,
status, seconds, when it ran, and the SHA-256 of every file it wrote or changed under the
folders its command names (`--out`, `--figures`, `--runs`, `--zoo`). A step is skipped,
and its record kept for the report, when

- a record with the same command says it finished ("ok"),
- every file it wrote still exists, with the same bytes unless a later recorded step wrote
  that file again (several zoo steps rewrite one summary table), and
- no step run in this invocation changed a file under the folders it reads (`--runs`,
  `--zoo`): a zoo trained again means its barrier is measured again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from lmc_jax.atomic_files import atomic_write_json, sha256_file
from lmc_jax.errors import LmcError

LEDGER = "steps.json"
# Flags whose values are folders a step writes under (and, the first two, reads from).
READ_FLAGS = ("--runs", "--zoo")
WRITE_FLAGS = READ_FLAGS + ("--out", "--figures")


class StepRecord(NamedTuple):
  argv: List[str]  # arguments after `python -m`
  status: str  # "ok" or "failed (<exit status>)"
  seconds: float
  finished: str  # UTC time the step ended, ISO 8601
  outputs: Dict[str, str]  # path written -> SHA-256 of its bytes then


def flag_paths(argv: Iterable[str], names: Tuple[str, ...]) -> List[Path]:
  """The folders named by the flags `names` in `argv` (comma-separated lists split)."""
  out = []
  for arg in argv:
    name, _, value = arg.partition("=")
    if name in names and value:
      out += [Path(v) for v in value.split(",") if v]
  return out


def snapshot(roots: Iterable[Path]) -> Dict[str, Tuple[int, int]]:
  """path -> (size, mtime in ns) of every file under `roots` (a root may be a file)."""
  seen = {}
  for root in roots:
    if root.is_file():
      files = [root]
    elif root.is_dir():
      files = [Path(d) / f for d, _, names in os.walk(root) for f in names]
    else:
      files = []
    for f in files:
      try:
        st = f.stat()
      except FileNotFoundError:  # removed while walking
        continue
      seen[str(f)] = (st.st_size, st.st_mtime_ns)
  return seen


def changed_files(before: Dict[str, Tuple[int, int]], after: Dict[str, Tuple[int, int]]
                  ) -> Dict[str, str]:
  """path -> SHA-256 of every file in `after` that is new or changed since `before`."""
  out = {}
  for path, stamp in after.items():
    if before.get(path) != stamp:
      try:
        out[path] = sha256_file(Path(path))
      except FileNotFoundError:  # a temporary file, gone again
        continue
  return out


def _under(path: str, roots: List[Path]) -> bool:
  p = Path(path)
  return any(p == r or r in p.parents for r in roots)


class Ledger:
  """The records of `path` (none if it does not exist), in the order the steps ran."""

  def __init__(self, path: Path):
    self.path = Path(path)
    self.records: List[StepRecord] = []
    if self.path.is_file():
      try:
        doc = json.loads(self.path.read_text())
        self.records = [StepRecord(list(r["argv"]), str(r["status"]), float(r["seconds"]),
                                   str(r["finished"]), dict(r["outputs"]))
                        for r in doc["steps"]]
      except (ValueError, KeyError, TypeError) as e:
        raise LmcError(f"{self.path} is not a reproduction ledger ({e}); delete it to run "
                       "every step again.") from None

  def find(self, argv: List[str]) -> Optional[StepRecord]:
    for r in self.records:
      if r.argv == argv:
        return r
    return None

  def intact(self, record: StepRecord) -> bool:
    """Every file `record` wrote exists, with its bytes unless a later record wrote it."""
    later = set()
    for r in self.records[self.records.index(record) + 1:]:
      later.update(r.outputs)
    for path, digest in record.outputs.items():
      if not Path(path).is_file():
        return False
      if path not in later and sha256_file(Path(path)) != digest:
        return False
    return True

  def known_digest(self, path: str) -> Optional[str]:
    """The last recorded SHA-256 of `path`, if any step recorded it."""
    digest = None
    for r in self.records:
      digest = r.outputs.get(path, digest)
    return digest

  def add(self, record: StepRecord) -> None:
    """Records a step (replacing an earlier record of the same command) and writes the
    ledger at once, so a kill after this step keeps it."""
    self.records = [r for r in self.records if r.argv != record.argv] + [record]
    atomic_write_json(self.path, {"format": 1, "steps": [r._asdict() for r in self.records]})


def run_or_keep(ledger: Ledger, argv: List[str], fresh: Dict[str, str], run) -> Tuple[
    StepRecord, bool]:
  """Runs the step `argv` with `run()` (which returns its exit status) unless the ledger
  holds a finished, intact record of it that no fresh output (files changed by steps run
  in this invocation, updated here) invalidates; returns (record, whether it ran)."""
  old = ledger.find(argv)
  reads = flag_paths(argv, READ_FLAGS)
  stale = any(_under(p, reads) for p in fresh)
  if old is not None and old.status == "ok" and not stale and ledger.intact(old):
    return old, False
  roots = flag_paths(argv, WRITE_FLAGS)
  before, start = snapshot(roots), time.perf_counter()
  code = run()
  outputs = changed_files(before, snapshot(roots))
  status = "ok" if code == 0 else f"failed ({code})"
  record = StepRecord(list(argv), status, time.perf_counter() - start,
                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), outputs)
  fresh.update({p: d for p, d in outputs.items() if ledger.known_digest(p) != d})
  ledger.add(record)
  return record, True
