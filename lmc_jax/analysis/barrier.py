"""Naive and aligned interpolation curves of a zoo on disk, written to `barrier.json`.

`barrier.json` = {"format": 2, "alphas": [...], "split": "test", "reference": r,
  "naive": {"pairs": [[i, j], ...], "loss": [[A floats], ...], "acc": [...],
            "epsilon": [...], "barrier": [...], "rebasin_barrier": [...]},
  "aligned": the curves after weight matching (the same keys), with "reference", "method",
             "max_iter", "seed", "matcher", "sweeps",
  "methods": {"weight": {"reference", "settings", "seconds", "sweep_seconds", "info",
                         "fraction_moved", "perms"} (its curves are "aligned"),
              "activation": {the curve keys and the same method keys}, ...,
              "<method>+repair": {curves after REPAIR}, "<method>": {"skipped": why}},
  "diagnostics": {...} (optional),
  "excluded": [diverged models], "collapsed": [models at chance accuracy, kept in every pair],
  "params_sha256": the zoo's, "versions": {...}}
`method_curves(result, name)` reads any entry's curves, the weight method's included.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from lmc_jax.align.diagnostics import alignment_diagnostics, fraction_moved
from lmc_jax.align.registry import MethodSettings, align_by, check_methods
from lmc_jax.atomic_files import atomic_write_json, remove_stale_temporaries
from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import load_dataset
from lmc_jax.dir_lock import DirLock
from lmc_jax.errors import LmcError
from lmc_jax.file_schema import SchemaError, barrier_fix, check_barrier_doc
from lmc_jax.lmc.batchnorm import has_batch_stats, reset_batches, reset_pair_sweep
from lmc_jax.lmc.interpolation import all_pairs, default_alphas, pair_sweep
from lmc_jax.lmc.measures import MEASURES, curves_entry
from lmc_jax.lmc.repair import repaired_pair_sweep
from lmc_jax.nn.architectures import model_at
from lmc_jax.result_files import BARRIER_FORMAT, BARRIER_JSON, check_format
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.symmetry.spec import PermutationSpec, perm_sizes, permute_zoo, validate_spec
from lmc_jax.symmetry.units import repair_sites
from lmc_jax.tree_utils import take
from lmc_jax.zoo.io import load_zoo_checked, package_versions, read_zoo_json, usable_models

CURVE_KEYS = ("pairs", "loss", "acc", *MEASURES)


class BarrierJob(NamedTuple):
  """A checked zoo and everything its curves are measured with."""
  directory: Path
  model: object
  params: dict  # stacked, model on axis 0
  doc: dict  # zoo.json
  spec: PermutationSpec
  reference: int
  split: str
  usable: list  # models that did not diverge
  skip: set  # models left out (diverged)
  pairs: np.ndarray  # (P, 2) pairs of usable models
  alphas: np.ndarray  # (A,)
  x: np.ndarray  # the split the curves are measured on
  y: np.ndarray
  fit_x: np.ndarray  # training data (fitting methods, REPAIR)
  fit_y: np.ndarray
  reset_x: Optional[object] = None  # (R, b, d) training batches for BatchNorm reset, or None


def prepare_job(directory, reference: int = 0, split: str = "test", alphas=None,
                data_dir="data", bn_reset_batches: int = 10,
                bn_reset_batch_size: int = 256, precision: str = "fp32") -> BarrierJob:
  """Loads the zoo and its data; refuses a bad split, reference or zoo in one sentence.
  The curves are measured with matmuls at `precision` (`nn.precision`), whatever the zoo
  trained in.

  For a zoo with BatchNorm, every interpolated network's statistics are recomputed on
  `bn_reset_batches` training batches of `bn_reset_batch_size` (`lmc.batchnorm`); 0 keeps
  the interpolated running statistics."""
  directory = Path(directory)
  config, _, params, doc = load_zoo_checked(directory)
  model = model_at(config, precision)
  spec = spec_for_config(config)
  validate_spec(spec, params, batch_dims=1)
  if split not in ("test", "train"):
    raise LmcError(f"Unknown split {split!r}; use 'test' or 'train'.")
  n = doc["num_models"]
  usable = usable_models(doc, directory)
  if len(usable) < 2:
    raise LmcError(f"{directory} has {len(usable)} usable model(s); comparing needs at least 2, "
                   "so train the zoo with --num_models >= 2.")
  if not 0 <= reference < n:
    raise LmcError(f"Reference model {reference} is not in {directory} (models 0..{n - 1}); "
                   "pass --reference within that range.")
  if reference not in usable:
    raise LmcError(f"Reference model {reference} of {directory} diverged; pass another "
                   f"--reference, e.g. {usable[0]}.")
  data = load_dataset(config, data_dir)
  x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
  skip = set(range(n)) - set(usable)
  if bn_reset_batches < 0:
    raise LmcError(f"--bn_reset_batches must be >= 0 (0: no reset), got {bn_reset_batches}.")
  reset_x = None
  if has_batch_stats(params) and bn_reset_batches:
    reset_x = reset_batches(data.x_train, bn_reset_batches, bn_reset_batch_size)
  return BarrierJob(directory, model, params, doc, spec, reference, split, usable, skip,
                    all_pairs(n, exclude=skip),
                    default_alphas() if alphas is None else np.asarray(alphas), x, y,
                    data.x_train, data.y_train, reset_x)


def sweep(job: BarrierJob, params):
  """The job's pair sweep of `params` (stacked), with BatchNorm reset where it applies."""
  if job.reset_x is not None:
    return reset_pair_sweep(job.model, params, job.pairs, job.reset_x, job.x, job.y, job.alphas)
  return pair_sweep(job.model, params, job.pairs, job.x, job.y, job.alphas)


def reset_record(job: BarrierJob) -> Optional[dict]:
  """How the job resets BatchNorm statistics, as barrier.json records it (None: no reset)."""
  if job.reset_x is None:
    return None
  return {"batches": int(job.reset_x.shape[0]), "batch_size": int(job.reset_x.shape[1])}


def precision_of(job: BarrierJob) -> str:
  """The precision of the job's matmuls, as barrier.json records it."""
  return getattr(job.model, "precision", "fp32")


def method_curves(result: dict, name: str) -> Optional[dict]:
  """The entry of `name` in a barrier.json dict: 'naive', 'aligned', or a method (for
  'weight', its record with the curves of 'aligned'); None where it was not computed."""
  if name in ("naive", "aligned"):
    return result.get(name)
  entry = result.get("methods", {}).get(name)
  if name == "weight" and entry is not None and "aligned" in result and "skipped" not in entry:
    entry = dict(entry, **{k: result["aligned"][k] for k in CURVE_KEYS})
  return entry


def _previous(job: BarrierJob) -> Optional[dict]:
  """The zoo's barrier.json if it was computed from these params with these settings (an
  older format is recomputed; a newer one is refused, so this version never overwrites it
  unasked). One that is damaged (not JSON, or a field wrong: see
  `file_schema.check_barrier_doc`) is recomputed with a warning saying what was wrong."""
  path = job.directory / BARRIER_JSON
  if not path.exists():
    return None
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    logging.warning("%s is not readable JSON (%s); it is not reused, every entry is recomputed.",
                    path, e)
    return None
  found = old.get("format") if isinstance(old, dict) else None
  if isinstance(found, int) and found > BARRIER_FORMAT:
    raise LmcError(f"{path} has format {found}, newer than the {BARRIER_FORMAT} this lmc_jax "
                   "reads; upgrade lmc_jax, or pass --recompute to replace it.")
  if not isinstance(old, dict) or found != BARRIER_FORMAT \
      or old.get("params_sha256") != job.doc["params_sha256"]:
    return None  # an older format, or another zoo's: recomputed
  try:
    check_barrier_doc(old, path, job.doc["num_models"],
                      perm_sizes(job.spec, job.params, batch_dims=1))
  except SchemaError as e:
    logging.warning("%s: %s; it is not reused, every entry is recomputed.", path, e.what)
    return None
  if (old.get("split") == job.split and old.get("reference") == job.reference
      and len(old["alphas"]) == len(job.alphas) and np.allclose(old["alphas"], job.alphas)
      and old.get("bn_reset") == reset_record(job)
      and old.get("precision", "fp32") == precision_of(job)):
    old.setdefault("methods", {})
    return old
  return None


def read_barrier_json(directory, num_models: Optional[int] = None) -> dict:
  """A zoo's barrier.json for a table or figure; refuses one that is not JSON, of a newer
  format or with a field wrong, in one sentence naming the file, the field and the fix."""
  path = Path(directory) / BARRIER_JSON
  try:
    doc = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise LmcError(f"{path} is not readable JSON ({e}); {barrier_fix(path)}.") from None
  return check_barrier_doc(check_format(doc, path, BARRIER_FORMAT), path, num_models)


def save_result(job: BarrierJob, result: dict) -> None:
  """Writes `result` as the zoo's barrier.json (atomically): after every entry, so that a
  run stopped part way keeps what it finished and the next run goes on from there."""
  result["collapsed"] = collapsed_models(job.doc)
  result["versions"] = package_versions()
  result["params_sha256"] = job.doc["params_sha256"]
  atomic_write_json(job.directory / BARRIER_JSON, result)


def _fresh(job: BarrierJob) -> dict:
  """A new result with the naive curves (already written)."""
  t0 = time.perf_counter()
  naive = sweep(job, job.params)
  result = {"format": BARRIER_FORMAT, "zoo": str(job.directory), "split": job.split,
            "bn_reset": reset_record(job), "precision": precision_of(job),
            "reference": job.reference,
            "alphas": job.alphas.tolist(), "excluded": sorted(job.skip),
            "naive": curves_entry(naive), "methods": {},
            "seconds": {"naive_sweep": time.perf_counter() - t0}}
  save_result(job, result)
  return result


def _kept(job: BarrierJob, entry: Optional[dict], wanted: dict):
  """(kept?, aligned params or None) for an entry already in barrier.json."""
  if entry is None or entry.get("settings") != wanted:
    return False, None
  if "skipped" in entry:
    return True, None
  if "perms" not in entry:
    return False, None
  perms = [{p: np.asarray(v) for p, v in pm.items()} for pm in entry["perms"]]
  return True, permute_zoo(job.spec, perms, job.params)


def _align(job: BarrierJob, result: dict, name: str, settings: MethodSettings,
           only: bool) -> Optional[dict]:
  """Aligns by `name` and records its entry (curves in 'aligned' for weight matching);
  returns the aligned params, or None when the method refused (then `only` re-raises)."""
  wanted = settings.for_method(name)
  logging.info("%s: aligning by %s", job.directory, name)
  try:
    res = align_by(name, job.model, job.spec, job.params, job.reference, job.skip, job.fit_x,
                   job.fit_y, job.x, job.y, settings)
  except LmcError as e:
    if only:
      raise
    logging.warning("%s: %s skipped: %s", job.directory, name, e)
    result["methods"][name] = {"skipped": str(e), "settings": wanted}
    return None
  t = time.perf_counter()
  curves = curves_entry(sweep(job, res.params))
  record = dict(reference=job.reference, settings=wanted, seconds=res.seconds,
                sweep_seconds=time.perf_counter() - t, info=res.info,
                fraction_moved=[fraction_moved(p) for p in res.perms],
                perms=[{p: np.asarray(v).tolist() for p, v in pm.items()} for pm in res.perms])
  if name == "weight":  # the study's measure: its curves are 'aligned', stored once
    result["aligned"] = dict(curves, reference=job.reference, method="weight_matching",
                             max_iter=wanted["max_iter"], seed=wanted["seed"],
                             matcher=res.info.get("matcher", wanted["matcher"]),
                             sweeps=res.info["sweeps"])
    result["methods"][name] = record
  else:
    result["methods"][name] = dict(curves, **record)
  return res.params


def _repair(job: BarrierJob, result: dict, name: str, params, settings: MethodSettings,
            extra: dict) -> bool:
  """Curves of `params` after REPAIR as entry `<name>+repair`, unless already there;
  whether it added the entry."""
  key, n = f"{name}+repair", settings.fit_samples
  if result["methods"].get(key, {}).get("fit_samples") == n:
    return False
  sites = repair_sites(job.spec, job.model, take(job.params, 0), job.fit_x[:1])
  if not sites:
    why = ("this network makes no hidden unit at a Dense or Conv with a bias, nor at a norm "
           "after one without, so REPAIR has nothing to fold its correction into")
    logging.warning("%s: %s skipped: %s", job.directory, key, why)
    result["methods"][key] = {"skipped": why, "fit_samples": n}
    return True
  curves = repaired_pair_sweep(job.model, params, job.pairs, job.fit_x[:n], job.x, job.y,
                               job.alphas, sites=sites)
  result["methods"][key] = dict(curves_entry(curves), fit_samples=n, **extra)
  return True


def analyse_zoo(directory, reference: int = 0, split: str = "test",
                alphas: Optional[np.ndarray] = None, data_dir="data",
                methods: Sequence[str] = ("weight",), repair: bool = False,
                diagnostics: bool = False, settings: Optional[MethodSettings] = None,
                recompute: bool = False, bn_reset_batches: int = 10,
                precision: str = "fp32") -> dict:
  """Naive curves and curves after each alignment method in `methods`; writes
  `barrier.json` into the zoo directory (atomically, after each entry, so a run stopped
  part way keeps what it finished) and returns its dict.

  `weight` always runs (it fills `aligned`, the study's measure). With `repair`, every
  set of curves is also measured after REPAIR (entries `<name>+repair`, `naive+repair`).
  Entries already in a barrier.json computed from the same params, split, reference and
  method settings are kept as they are unless `recompute`.
  """
  settings = settings if settings is not None else MethodSettings()
  methods = check_methods(["weight"] + [m for m in methods if m != "weight"])
  job = prepare_job(directory, reference, split, alphas, data_dir, bn_reset_batches,
                    precision=precision)
  with DirLock(job.directory, "barrier analysis"):  # no zoo run replaces it meanwhile
    remove_stale_temporaries(job.directory)  # what a killed write left
    return _analyse_job(job, methods, repair, diagnostics, settings, recompute)


def _analyse_job(job: BarrierJob, methods, repair: bool, diagnostics: bool,
                 settings: MethodSettings, recompute: bool) -> dict:
  old = None if recompute else _previous(job)
  result = old if old is not None else _fresh(job)
  kept = []
  for name in methods:
    wanted = settings.for_method(name)
    was_kept, aligned = _kept(job, result["methods"].get(name), wanted)
    if was_kept:
      kept.append(name)
    else:
      result["methods"].pop(f"{name}+repair", None)  # measured on the old alignment
      aligned = _align(job, result, name, settings, only=len(methods) == 1)
      save_result(job, result)
    if repair and aligned is not None and _repair(
        job, result, name, aligned, settings, {"reference": job.reference, "settings": wanted}):
      save_result(job, result)
  if repair and _repair(job, result, "naive", job.params, settings, {}):
    save_result(job, result)
  if kept:
    logging.info("%s: kept the %s results already in %s (pass --recompute to redo them)",
                 job.directory, ", ".join(kept), BARRIER_JSON)
  wanted = {"seed": settings.seed, "max_iter": settings.max_iter,
            "fit_samples": settings.fit_samples}
  if diagnostics and result.get("diagnostics", {}).get("settings") != wanted:
    result["diagnostics"] = dict(
        alignment_diagnostics(job.model, job.spec, job.params, job.reference, job.usable,
                              job.fit_x[:settings.fit_samples], job.x, job.y, settings,
                              reset_x=job.reset_x),
        settings=wanted)
  save_result(job, result)
  return result


def collapsed_models(doc: dict) -> list:
  """Models of a zoo.json dict marked collapsed (at chance accuracy; not diverged)."""
  return [k for k, m in enumerate(doc.get("models", []))
          if m.get("collapsed") and not m.get("diverged")]


def pairs_with(pairs, models) -> int:
  """How many of `pairs` `(P, 2)` involve one of `models`."""
  pairs = np.asarray(pairs).reshape(-1, 2)
  return int(np.isin(pairs, list(models)).any(axis=1).sum()) if len(models) else 0


@dataclasses.dataclass(frozen=True)
class ZooBarriers:
  """One zoo's barrier.json as the tables and figures read it."""
  directory: Path
  config: ZooConfig
  result: dict  # the barrier.json dict
  models: Tuple[int, ...]  # usable models
  mean_test_loss: float  # over the usable models
  data_source: str = ""  # e.g. 'CIFAR-10 (JPEG re-encode)'; '' for the dataset itself
  collapsed: Tuple[int, ...] = ()  # usable models at chance accuracy

  @property
  def width(self) -> int:
    return self.config.model.hidden[0]

  @property
  def alphas(self) -> np.ndarray:
    return np.asarray(self.result["alphas"])

  @property
  def reference(self) -> int:
    return self.result["reference"]

  @property
  def diagnostics(self) -> Optional[dict]:
    return self.result.get("diagnostics")

  def curves(self, name: str) -> Optional[dict]:
    """See `method_curves`."""
    return method_curves(self.result, name)


def zoo_barriers(directory, result: dict) -> ZooBarriers:
  """The record of a zoo whose barrier.json dict is `result`."""
  doc = read_zoo_json(directory)
  models = tuple(usable_models(doc, directory))
  return ZooBarriers(Path(directory), ZooConfig.from_dict(doc["config"]), result, models,
                     float(np.mean([doc["models"][k]["test_loss"] for k in models])),
                     doc.get("data_source", ""), tuple(collapsed_models(doc)))
