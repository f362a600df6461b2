"""Naive and aligned interpolation curves of a zoo on disk, written to `barrier.json`
(`barrier_records.BarrierResult`: its layout, and the records every reader takes). Weight
matching always runs: its curves, 'aligned', are the study's measure.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np

from lmc_jax.align.diagnostics import alignment_diagnostics, fraction_moved
from lmc_jax.align.registry import AlignTask, MethodSettings, align_by, check_methods
from lmc_jax.atomic_files import atomic_write_json, remove_stale_temporaries
from lmc_jax.barrier_records import (
  BarrierResult,
  BnReset,
  CalibrationEntry,
  Diagnostics,
  MethodEntry,
  RepairEntry,
  barrier_fix,
)
from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import dataset_info, held_out_rows
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan
from lmc_jax.lmc.batchnorm import has_batch_stats, reset_arguments, reset_batches
from lmc_jax.lmc.interpolation import all_pairs, default_alphas, pair_sweep
from lmc_jax.lmc.measures import curve_set
from lmc_jax.lmc.repair import repaired_pair_sweep
from lmc_jax.lmc.temperature import calibrated_sweep
from lmc_jax.records import CurveSet, ZooRecord
from lmc_jax.result_files import BARRIER_FORMAT, BARRIER_JSON
from lmc_jax.schema import SchemaError, file_format, is_int
from lmc_jax.stopping import note_saved
from lmc_jax.symmetry.spec import orient_zoo, perm_sizes
from lmc_jax.symmetry.units import repair_sites
from lmc_jax.zoo.handle import ZooHandle, check_reference, held_zoo, open_zoo
from lmc_jax.zoo.io import package_versions, read_zoo_json


class BarrierJob(NamedTuple):
  """A zoo and everything its curves are measured with: the task every alignment method is
  handed (network at the sweep's precision, spec, models, data, settings, plan, BatchNorm
  batches), the pairs and the alphas."""
  zoo: ZooHandle
  task: AlignTask
  split: str
  pairs: np.ndarray  # (P, 2) pairs of usable models
  alphas: np.ndarray  # (A,)

  @property
  def directory(self) -> Path:
    return self.zoo.directory


def prepare_job(zoo, reference: int = 0, split: str = "test", alphas=None, data_dir="data",
                bn_reset_batches: int = 10, bn_reset_batch_size: int = 256,
                precision: str = "fp32", settings: Optional[MethodSettings] = None,
                plan: Optional[ExecutionPlan] = None) -> BarrierJob:
  """The job of the zoo `zoo` (a `ZooHandle`, or its directory) and its data; refuses a bad
  split, reference or zoo in one sentence. The curves are measured with matmuls at
  `precision` (`nn.precision`), whatever the zoo trained in.

  For a zoo with BatchNorm, every interpolated network's statistics are recomputed on
  `bn_reset_batches` training batches of `bn_reset_batch_size` (`lmc.batchnorm`); 0 keeps
  the interpolated running statistics."""
  zoo = open_zoo(zoo).at_precision(precision)
  if split not in ("test", "train"):
    raise LmcError(f"Unknown split {split!r}; use 'test' or 'train'.")
  check_reference(zoo, reference)
  if bn_reset_batches < 0:
    raise LmcError(f"--bn_reset_batches must be >= 0 (0: no reset), got {bn_reset_batches}.")
  data = zoo.dataset(data_dir)
  x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
  skip = set(range(zoo.num_models)) - set(zoo.usable)
  reset_x = None
  if has_batch_stats(zoo.variables) and bn_reset_batches:
    reset_x = reset_batches(data.x_train, bn_reset_batches, bn_reset_batch_size)
  task = AlignTask.make(zoo.model, zoo.spec, zoo.variables, reference, skip, data.x_train,
                        data.y_train, x, y, settings, plan, reset_x)
  return BarrierJob(zoo, task, split, all_pairs(zoo.num_models, exclude=skip),
                    default_alphas() if alphas is None else np.asarray(alphas))


def sweep(job: BarrierJob, params):
  """The job's pair sweep of `params` (stacked), with BatchNorm reset where it applies."""
  t = job.task
  return pair_sweep(t.model, params, job.pairs, t.eval_x, t.eval_y, job.alphas, plan=t.plan,
                    **reset_arguments(t.reset_x))


def reset_record(job: BarrierJob) -> Optional[BnReset]:
  """How the job resets BatchNorm statistics, as barrier.json records it (None: no reset)."""
  reset_x = job.task.reset_x
  if reset_x is None:
    return None
  return BnReset(int(reset_x.shape[0]), int(reset_x.shape[1]))


def precision_of(job: BarrierJob) -> str:
  """The precision of the job's matmuls, as barrier.json records it."""
  return job.zoo.config.model.precision


def _previous(job: BarrierJob) -> Optional[BarrierResult]:
  """The zoo's barrier.json if it was computed from these params with these settings. A
  newer format is refused, so this version never overwrites it unasked; format 2 is read
  into the records of format 3 (its entries mean what they did, only their place in the
  file moved) and format 1 is recomputed (written before formats were recorded, its
  settings can not be trusted to say how its entries were made). One that is damaged (not
  JSON, or a field wrong: see `BarrierResult.from_json`) is recomputed with a warning
  saying what was wrong."""
  path = job.directory / BARRIER_JSON
  if not path.exists():
    return None
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    logging.warning("%s is not readable JSON (%s); it is not reused, every entry is recomputed.",
                    path, e)
    return None
  found = file_format(old)
  if is_int(found) and found > BARRIER_FORMAT:
    raise LmcError(f"{path} has format {found}, newer than the {BARRIER_FORMAT} this lmc_jax "
                   "reads; upgrade lmc_jax, or pass --recompute to replace it.")
  if not is_int(found) or found < 2:
    return None
  try:
    result = BarrierResult.from_json(old, path, job.zoo.num_models,
                                     perm_sizes(job.task.spec, job.task.params, batch_dims=1))
  except SchemaError as e:
    logging.warning("%s: %s; it is not reused, every entry is recomputed.", path, e.what)
    return None
  if (result.params_sha256 == job.zoo.record.params_sha256 and result.split == job.split
      and result.reference == job.task.reference and len(result.alphas) == len(job.alphas)
      and np.allclose(result.alphas, job.alphas) and result.bn_reset == reset_record(job)
      and result.precision == precision_of(job)):
    return result
  return None  # another zoo's, or other settings: recomputed


def read_barrier_json(directory, num_models: Optional[int] = None,
                      params_sha256: Optional[str] = None) -> BarrierResult:
  """A zoo's barrier.json for a table or figure, in any format this version knows;
  refuses one that is not JSON, of a newer format or with a field wrong, in one sentence
  naming the file, the field and the fix. With `params_sha256` (the zoo's, from its
  zoo.json), also one computed from other params (the zoo was replaced since)."""
  path = Path(directory) / BARRIER_JSON
  try:
    doc = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise LmcError(f"{path} is not readable JSON ({e}); {barrier_fix(path)}.") from None
  result = BarrierResult.from_json(doc, path, num_models)
  if params_sha256 is not None and result.params_sha256 != params_sha256:
    raise LmcError(f"{path} was computed from other params than the zoo now in {directory} "
                   f"(the zoo was replaced since); {barrier_fix(path)}.")
  return result


def save_result(job: BarrierJob, result: BarrierResult) -> BarrierResult:
  """Writes `result` as the zoo's barrier.json (atomically) and returns it as written
  (with the zoo's collapsed models, checksum and the package versions): after every entry,
  so that a run stopped part way keeps what it finished and the next run goes on from
  there."""
  record = job.zoo.record
  result = result.replace(collapsed=record.collapsed, versions=package_versions(),
                          params_sha256=record.params_sha256)
  path = job.directory / BARRIER_JSON
  atomic_write_json(path, result.to_json())
  note_saved(str(path), f"{path}, with the curves of {', '.join(('naive',) + result.method_names)}")
  return result


def _fresh(job: BarrierJob) -> BarrierResult:
  """A new result with the naive curves (already written)."""
  t0 = time.perf_counter()
  naive = curve_set(sweep(job, job.task.params))
  return save_result(job, BarrierResult(
      job.alphas, naive, reference=job.task.reference, split=job.split,
      precision=precision_of(job), bn_reset=reset_record(job),
      excluded=tuple(sorted(job.task.skip)),
      seconds={"naive_sweep": time.perf_counter() - t0}, zoo=str(job.directory)))


def _kept(job: BarrierJob, entry: Optional[MethodEntry], wanted: dict):
  """(kept?, aligned params or None) for an entry already in barrier.json."""
  if entry is None or _settings_differ(job, dict(entry.settings), wanted):
    return False, None
  if entry.skipped is not None:
    return True, None
  if not entry.perms:
    return False, None
  maps = [dict(m) for m in entry.maps] or None
  return True, orient_zoo(job.task.spec, [dict(p) for p in entry.perms], maps, job.task.params)


def _settings_differ(job: BarrierJob, old: dict, wanted: dict) -> bool:
  """Whether an entry made with settings `old` is not one made with `wanted`. An entry from
  before the `signs` setting searched plain permutations (signs false); where the spec has
  no signs the setting changes nothing, so such entries count whatever it says."""
  if "signs" in wanted and "signs" not in old:
    old = {**old, "signs": False}
  if not job.task.spec.signs:
    old, wanted = ({k: v for k, v in d.items() if k != "signs"} for d in (old, wanted))
  return old != wanted


def _align(job: BarrierJob, result: BarrierResult, name: str, only: bool):
  """(the result with the entry of method `name`, the aligned params or None when the
  method refused: then `only` re-raises)."""
  wanted = job.task.settings.for_method(name)
  logging.info("%s: aligning by %s", job.directory, name)
  try:
    res = align_by(name, job.task)
  except LmcError as e:
    if only:
      raise
    logging.warning("%s: %s skipped: %s", job.directory, name, e)
    return result.with_method(MethodEntry(name, wanted, skipped=str(e))), None
  t = time.perf_counter()
  curves = curve_set(sweep(job, res.params))
  entry = MethodEntry(name, wanted, job.task.reference, res.seconds, time.perf_counter() - t,
                      res.info, [fraction_moved(p) for p in res.perms], res.perms, curves,
                      maps=res.maps or ())
  return result.with_method(entry), res.params


def _repair(job: BarrierJob, result: BarrierResult, name: str, params) -> Optional[BarrierResult]:
  """The result with the curves of `params` after REPAIR as the REPAIR of `name` ('naive'
  or a method), or None where they are already there."""
  t = job.task
  n = t.settings.fit_samples
  done = result.repaired(name)
  if done is not None and done.fit_samples == n:
    return None
  sites = repair_sites(t.spec, t.model, t.member(0), t.fit_x[:1])
  if not sites:
    why = ("this network makes no hidden unit at a Dense or Conv with a bias, nor at a norm "
           "after one without, so REPAIR has nothing to fold its correction into")
    logging.warning("%s: REPAIR of %s skipped: %s", job.directory, name, why)
    return result.with_repaired(name, RepairEntry(n, skipped=why))
  curves = repaired_pair_sweep(t.model, params, job.pairs, t.fit_x, t.eval_x, t.eval_y,
                               job.alphas, sites=sites, plan=t.plan)
  return result.with_repaired(name, RepairEntry(n, curve_set(curves)))


def check_calibration(config: ZooConfig, directory) -> int:
  """The number of held-out training rows a zoo of `config` offers for fitting softmax
  temperatures, or an LmcError saying why it can not be calibrated."""
  kept = dataset_info(config.data).n_train
  held = dataset_info(config.data.replace(train_subset=0)).n_train - kept
  if held < 1:
    raise LmcError(f"--calibrate_temperature fits temperatures on training rows the zoo did not "
                   f"train on, and {directory} trained on all {kept}; train it with "
                   f"--train_subset below {kept} to hold some out.")
  if config.model.norm == "batchnorm":
    raise LmcError(f"--calibrate_temperature does not yet reset BatchNorm statistics, which "
                   f"{directory} holds; calibrate a zoo without BatchNorm.")
  return held


def _calibrate(job: BarrierJob, result: BarrierResult, name: str, params,
               rows) -> Optional[BarrierResult]:
  """The result with the curves of `params` at fitted temperatures as the calibrated curves
  of `name` ('naive' or a method), or None where they are already there."""
  done = result.calibrated(name)
  if done is not None and done.held_out == len(rows[1]):
    return None
  t = job.task
  found = calibrated_sweep(t.model, params, job.pairs, job.alphas, *rows, t.eval_x, t.eval_y)
  entry = CalibrationEntry(len(rows[1]), found.temperature, curve_set(found.curves))
  return result.with_calibrated(name, entry)


def analyse_zoo(zoo, reference: int = 0, split: str = "test",
                alphas: Optional[np.ndarray] = None, data_dir="data",
                methods: Sequence[str] = ("weight",), repair: bool = False,
                diagnostics: bool = False, settings: Optional[MethodSettings] = None,
                recompute: bool = False, bn_reset_batches: int = 10,
                precision: str = "fp32", plan: Optional[ExecutionPlan] = None,
                calibrate: bool = False) -> BarrierResult:
  """Naive curves and curves after each alignment method in `methods` of the zoo `zoo` (a
  `ZooHandle`, or its directory); writes `barrier.json` into the zoo directory
  (atomically, after each entry, so a run stopped part way keeps what it finished) and
  returns its record.

  `weight` always runs (its curves are 'aligned', the study's measure). With `repair`,
  every set of curves is also measured after REPAIR (each entry's `repaired`). Entries
  already in a barrier.json computed from the same params, split, reference and method
  settings are kept as they are unless `recompute`. With `calibrate`, every set of curves
  is also measured at each network's own softmax temperature, fit on the training rows the
  zoo did not train on, the first `settings.fit_samples` of them (`lmc.temperature`; each
  entry's `calibrated`).
  """
  methods = check_methods(["weight"] + [m for m in methods if m != "weight"])
  # The lock first: no zoo run swaps another zoo in between reading this one and writing
  # its results.
  with held_zoo(zoo, "barrier analysis") as zoo:
    job = prepare_job(zoo, reference, split, alphas, data_dir, bn_reset_batches,
                      precision=precision, settings=settings, plan=plan)
    rows = None
    if calibrate:
      check_calibration(job.zoo.config, job.directory)
      x_fit, y_fit = held_out_rows(job.zoo.config, data_dir)
      n = job.task.settings.fit_samples  # the first of them, as the other fits take
      rows = (x_fit[:n], y_fit[:n])
    remove_stale_temporaries(job.directory)  # what a killed write left
    return _analyse_job(job, methods, repair, diagnostics, recompute, rows)


def _analyse_job(job: BarrierJob, methods, repair: bool, diagnostics: bool,
                 recompute: bool, rows=None) -> BarrierResult:
  t, settings = job.task, job.task.settings
  old = None if recompute else _previous(job)
  result = old if old is not None else _fresh(job)
  kept = []
  for name in methods:
    was_kept, aligned = _kept(job, result.method(name), settings.for_method(name))
    if was_kept:
      kept.append(name)
    else:  # a new entry: no REPAIR measured on the old alignment is carried over
      result, aligned = _align(job, result, name, only=len(methods) == 1)
      result = save_result(job, result)
    repaired = _repair(job, result, name, aligned) if repair and aligned is not None else None
    if repaired is not None:
      result = save_result(job, repaired)
    calibrated = _calibrate(job, result, name, aligned, rows) \
        if rows is not None and aligned is not None else None
    if calibrated is not None:
      result = save_result(job, calibrated)
  repaired = _repair(job, result, "naive", t.params) if repair else None
  if repaired is not None:
    result = save_result(job, repaired)
  calibrated = _calibrate(job, result, "naive", t.params, rows) if rows is not None else None
  if calibrated is not None:
    result = save_result(job, calibrated)
  if kept:
    logging.info("%s: kept the %s results already in %s (pass --recompute to redo them)",
                 job.directory, ", ".join(kept), BARRIER_JSON)
  wanted = {"seed": settings.seed, "max_iter": settings.max_iter,
            "fit_samples": settings.fit_samples}
  if diagnostics and (result.diagnostics is None or result.diagnostics.settings != wanted):
    found = alignment_diagnostics(t.model, t.spec, t.params, t.reference, job.zoo.usable,
                                  t.fit_x, t.eval_x, t.eval_y, settings, reset_x=t.reset_x)
    result = result.replace(diagnostics=dataclasses.replace(found, settings=wanted))
  return save_result(job, result)


def pairs_with(pairs, models) -> int:
  """How many of `pairs` `(P, 2)` involve one of `models`."""
  pairs = np.asarray(pairs).reshape(-1, 2)
  return int(np.isin(pairs, list(models)).any(axis=1).sum()) if len(models) else 0


@dataclasses.dataclass(frozen=True)
class ZooBarriers:
  """One zoo as the tables and figures read it: its directory, its zoo.json and its
  barrier.json."""
  directory: Path
  zoo: ZooRecord
  result: BarrierResult

  @property
  def config(self) -> ZooConfig:
    return self.zoo.config

  @property
  def models(self) -> tuple:
    """The usable models (not diverged)."""
    return self.zoo.usable

  @property
  def collapsed(self) -> tuple:
    """Usable models at chance accuracy."""
    return self.zoo.collapsed

  @property
  def mean_test_loss(self) -> float:
    return self.zoo.mean_test_loss

  @property
  def data_source(self) -> str:
    """e.g. 'CIFAR-10 (JPEG re-encode)'; '' for the dataset itself."""
    return self.zoo.data_source

  @property
  def width(self) -> int:
    return self.config.model.hidden[0]

  @property
  def alphas(self) -> np.ndarray:
    return self.result.alphas

  @property
  def reference(self) -> Optional[int]:
    return self.result.reference

  @property
  def diagnostics(self) -> Optional[Diagnostics]:
    return self.result.diagnostics

  def curves(self, name: str, repaired: bool = False) -> Optional[CurveSet]:
    """See `BarrierResult.curves`: 'naive', 'aligned' or a method, after REPAIR if
    `repaired`."""
    return self.result.curves(name, repaired)


def zoo_barriers(zoo, result: BarrierResult) -> ZooBarriers:
  """The record of the zoo `zoo` (a `ZooHandle`, or its directory) whose barrier.json is
  `result`."""
  if isinstance(zoo, ZooHandle):
    return ZooBarriers(zoo.directory, zoo.record, result)
  return ZooBarriers(Path(zoo), read_zoo_json(zoo), result)
