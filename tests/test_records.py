"""The records of the result files: each written by `to_json` and read back by `from_json`
into an equal record (non-finite values, skipped entries and all), in memory and through
the file; and nothing in lmc_jax but the records reads a result document by key."""
import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import lmc_jax
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.barrier_records import (
  BarrierResult,
  BnReset,
  Diagnostics,
  MethodEntry,
  RepairEntry,
  WeightRestarts,
)
from lmc_jax.config import default_config
from lmc_jax.lmc.interpolation import Curves
from lmc_jax.lmc.measures import MEASURES, curve_set, epsilon, loss_barrier, rebasin_barrier
from lmc_jax.records import MEASURE_NAMES, CheckpointMeta, CurveSet, ModelMetrics, ZooRecord
from lmc_jax.schema import SchemaError
from lmc_jax.study_records import (
  DynamicsRecord,
  GroupRow,
  PlaneGrid,
  PlaneRecord,
  RedundancyRecord,
  SwaRecord,
)

NAN, INF = float("nan"), float("inf")
ALPHAS = np.linspace(0, 1, 5)


def _curves(seed=0, bad=NAN) -> CurveSet:
  rng = np.random.default_rng(seed)
  loss = rng.uniform(0.1, 1.0, (3, 5))
  loss[1, 2] = bad
  return curve_set(Curves(ALPHAS, np.array([[0, 1], [0, 2], [1, 2]]), loss,
                          rng.uniform(0.5, 1.0, (3, 5))))


def _method(name="activation", bad=NAN) -> MethodEntry:
  perm = lambda *p: {"P_0": np.array(p)}
  return MethodEntry(name, {"seed": 0, "fit_samples": 64}, 0, 1.25, bad, {"sweeps": [0, 2, 1]},
                     (0.0, 0.5, 0.75), (perm(0, 1, 2, 3), perm(1, 0, 2, 3), perm(3, 2, 1, 0)),
                     _curves(1, bad), RepairEntry(64, _curves(2, bad)))


def _barrier(bad=NAN) -> BarrierResult:
  restarts = WeightRestarts((1, 2), [[0.5, 0.5], [0.25, bad]], [[0.1, 0.1], [0.2, 0.3]], 0.05, bad)
  return BarrierResult(
      ALPHAS, _curves(3, bad),
      (_method("weight", bad), _method("activation", bad),
       MethodEntry("exact", {"exact_max_tflop": 1.0}, skipped="too many permutations; use less"),
       dataclasses.replace(_method("mergemany", bad),
                           repaired=RepairEntry(64, skipped="no sites"))),
      RepairEntry(64, _curves(4, bad)), 0, "test", "bf16", BnReset(10, 256), (3,), (1,),
      Diagnostics([1.0, bad], [0.5, 0.75], restarts, ((0, 1, 2), (0, 2, 3)), {"seed": 0}),
      {"naive_sweep": 0.5}, "ab" * 32, {"jax": "0.0"}, "runs/moons_w4")


def _zoo() -> ZooRecord:
  config = default_config("moons", hidden=(4,), num_models=3)
  return ZooRecord(config, "cd" * 32, (ModelMetrics(0.3, 0.31, 0.9, 0.88),
                                       ModelMetrics(NAN, NAN, 0.5, NAN, diverged=True),
                                       ModelMetrics(0.69, 0.7, 0.5, 0.5, collapsed=True)),
                   {"jax": "0.0"}, "history.npz", 12.5, "Moons")


def _plane(bad=NAN) -> PlaneGrid:
  loss = np.arange(9.0).reshape(3, 3)
  loss[1, 1] = bad
  return PlaneGrid([0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], loss, loss / 10,
                   [[0, 0], [1, 0], [0.5, 1]], [0.1, bad, 0.3])


def _dynamics(bad=NAN) -> DynamicsRecord:
  m = np.array([[0, 0.1, 0.2], [0.1, 0, bad], [0.2, bad, 0]])
  return DynamicsRecord(["runs/a", "runs/b"], ["pytorch / adamw", "pytorch / sgd"], [0, 0, 1],
                        [("runs/a", 0), ("runs/a", 2), ("runs/b", 1)],
                        {"best": 0, "best_of_pytorch / adamw": 0, "best_of_pytorch / sgd": 2},
                        [GroupRow("pytorch / adamw", 2, "0.300 +- 0.010", "0.900 +- 0.001", 0.1,
                                  bad),
                         GroupRow("pytorch / sgd", 1, "0.400 +- 0.000", "0.800 +- 0.000", bad,
                                  0.2)],
                        {"naive": m, "best": m / 2}, {"jax": "0.0"})


def every_record(bad=NAN):
  """(record, how `from_json` reads its document back) for every record, with `bad` as the
  non-finite value wherever a number may be one."""
  config = default_config("moons", hidden=(4,), num_models=3)
  method = _method(bad=bad)
  return [
      (ModelMetrics(NAN, NAN, 0.5, 0.5, diverged=True), {}),
      (_zoo(), {}),
      (_curves(bad=bad), {}),
      (RepairEntry(64, _curves(bad=bad)), {}),
      (RepairEntry(None, skipped="nothing to fold into"), {}),
      (method, {"name": "activation"}),
      (MethodEntry("sinkhorn", {"seed": 1}, skipped="diverged"), {"name": "sinkhorn"}),
      (BnReset(2, 32), {}),
      (_barrier(bad).diagnostics.weight_restarts, {}),
      (_barrier(bad).diagnostics, {}),
      (_barrier(bad), {}),
      (BarrierResult(ALPHAS, _curves(bad=bad)), {}),  # a run stopped after the naive curves
      (CheckpointMeta(config, 4, 8, 12, "ef" * 32), {}),
      (SwaRecord(2, 3, 0.05, 0, bad, [0.3, bad, 0.2], [0.3, 0.25, bad], ALPHAS,
                 _curves(bad=bad)), {}),
      (_plane(bad), {}),
      (PlaneRecord((0, 2, 1), _plane(bad), _plane(), "test", "fp32", {"jax": "0.0"}), {}),
      (RedundancyRecord("runs/moons_w4", 0.99, 0, ALPHAS, 4, [3, 4, 2], [0.3, bad, 0.31],
                        [0.9, 0.5, 0.91], (0, 2), _curves(bad=bad), _curves(5, bad), "ab" * 32,
                        {"jax": "0.0"}), {}),
      (GroupRow("pytorch / adamw", 2, "0.3 +- 0.0", "0.9 +- 0.0", bad, 0.1), {}),
      (_dynamics(bad), {}),
  ]


IDS = [type(r).__name__ for r, _ in every_record()]


@pytest.mark.parametrize("record, context", every_record(), ids=IDS)
def test_every_record_reads_back_what_it_writes(record, context):
  doc = record.to_json()
  again = type(record).from_json(doc, Path("runs/x/file.json"), **context)
  same_text = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
  assert again == record and same_text(again.to_json(), doc)  # NaN written as it was
  assert type(record).from_json(json.loads(json.dumps(doc)), "f.json", **context) == record


@pytest.mark.parametrize("record, context", every_record(INF), ids=IDS)
def test_through_the_file_a_non_finite_value_comes_back_as_nan(record, context, tmp_path):
  """JSON has no spelling for NaN or infinities: the file holds null, read back as NaN."""
  atomic_write_json(tmp_path / "f.json", record.to_json())
  text = (tmp_path / "f.json").read_text()
  assert "Infinity" not in text and "NaN" not in text
  again = type(record).from_json(json.loads(text), tmp_path / "f.json", **context)
  as_nan = type(record).from_json(json.loads(json.dumps(_inf_as_nan(record.to_json()))),
                                  "f.json", **context)
  assert again == as_nan


def _inf_as_nan(x):
  if isinstance(x, float) and np.isinf(x):
    return NAN
  if isinstance(x, dict):
    return {k: _inf_as_nan(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_inf_as_nan(v) for v in x]
  return x


def test_records_are_frozen_and_compare_by_value():
  a, b = _barrier(), _barrier()
  assert a == b and a is not b
  assert a != dataclasses.replace(a, precision="fp32")
  assert a != a.with_method(MethodEntry("extra", skipped="no"))
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.split = "train"
  with pytest.raises(ValueError):  # the arrays too
    a.naive.loss[0, 0] = 1.0
  assert _curves() != _curves(bad=0.5)


def test_model_metrics_read_by_name_like_the_dicts_they_replace():
  m = ModelMetrics(0.1, 0.2, 0.9, 0.8, collapsed=True)
  assert [m[k] for k in ("train_loss", "test_loss", "train_acc", "test_acc")] == [0.1, 0.2, 0.9,
                                                                                 0.8]
  assert m["collapsed"] and not m["diverged"]
  with pytest.raises(KeyError):
    m["format"]


def test_zoo_record_properties():
  z = _zoo()
  assert (z.num_models, z.seed, z.usable, z.diverged, z.collapsed) == (3, 0, (0, 2), (1,), (2,))
  assert z.mean_test_loss == pytest.approx((0.31 + 0.7) / 2)
  assert z.data_name == "Moons" and dataclasses.replace(z, data_source="").data_name == "moons"
  doc = z.to_json()
  assert doc["format"] == 2 and doc["num_models"] == 3 and doc["models"][1]["diverged"]


def test_barrier_result_accessors():
  r = _barrier()
  assert r.method_names == ("weight", "activation", "exact", "mergemany")
  assert r.curves("aligned") == r.method("weight").curves == r.curves("weight")
  assert r.curves("naive") == r.naive
  assert r.curves("exact") is None and r.method("exact").skipped.startswith("too many")
  assert r.curves("ste") is None and r.method("ste") is None
  assert r.curves("naive", repaired=True) == r.naive_repaired.curves
  assert r.repaired("aligned") == r.method("weight").repaired
  assert r.curves("mergemany", repaired=True) is None  # REPAIR skipped
  new = MethodEntry("activation", {"seed": 1}, skipped="refused")
  replaced = r.with_method(new)
  assert replaced.method_names == r.method_names and replaced.method("activation") == new
  assert r.with_method(MethodEntry("ste", skipped="x")).method_names[-1] == "ste"
  fixed = r.with_repaired("exact", RepairEntry(8, skipped="x")).repaired("exact")
  assert fixed == RepairEntry(8, skipped="x")
  assert r.with_repaired("naive", None).repaired("naive") is None
  with pytest.raises(ValueError, match="twice"):
    BarrierResult(ALPHAS, r.naive, (new, new))


def test_format_3_lays_every_method_out_alike():
  doc = _barrier().to_json()
  assert doc["format"] == 5 and "aligned" not in doc
  assert set(doc["methods"]) == {"weight", "activation", "exact", "mergemany"}
  weight = doc["methods"]["weight"]
  assert {"pairs", "loss", "acc", *MEASURE_NAMES, "perms", "settings", "repaired"} <= set(weight)
  assert set(doc["methods"]["exact"]) == {"skipped", "settings"}
  assert doc["methods"]["mergemany"]["repaired"] == {"fit_samples": 64, "skipped": "no sites"}
  assert doc["naive"]["repaired"]["fit_samples"] == 64


def test_the_measures_are_named_once():
  assert tuple(MEASURES) == MEASURE_NAMES
  assert [MEASURES[k] for k in MEASURE_NAMES] == [epsilon, loss_barrier, rebasin_barrier]
  c = _curves()
  for name, fn in MEASURES.items():  # each computed by its own formula
    np.testing.assert_array_equal(c.measure(name), fn(c.loss, ALPHAS))
  with pytest.raises(ValueError, match="measures"):
    CurveSet(c.pairs, c.loss, c.acc, {"epsilon": c.epsilon})


def test_a_newer_format_is_refused_in_one_sentence():
  for record, _ in every_record():
    doc = record.to_json()
    if "format" not in doc:
      continue
    doc["format"] += 1
    with pytest.raises(lmc_jax.LmcError, match=r"f.json has format \d+, newer than the \d+ this "
                                                r"lmc_jax reads; upgrade lmc_jax"):
      type(record).from_json(doc, "f.json")


def test_a_wrong_study_file_names_its_field():
  doc = _dynamics().to_json()
  doc["table"][1]["eps_within"] = "x"
  with pytest.raises(SchemaError, match=r"d.json: table\[1\].eps_within is 'x', not a number "
                                        r"or null; write d.json again with the lmc_jax"):
    DynamicsRecord.from_json(doc, "d.json")
  doc = SwaRecord(2, 3, 0.05, 0, 0.2, [0.3, 0.2, 0.2], [0.3, 0.25, 0.2], ALPHAS,
                  _curves()).to_json()
  doc["samples"]["pairs"][0] = [0, 3]
  with pytest.raises(SchemaError, match=r"samples.pairs\[0\] is 3, outside 0..2"):
    SwaRecord.from_json(doc, "swa.json")


# -- nothing reads a result document by key outside the records ------------------------------

PACKAGE = Path(lmc_jax.__file__).parent
RECORD_MODULES = {"records.py", "barrier_records.py", "study_records.py", "schema.py",
                  "merge_records.py"}
# Every key of the documents the records hold: zoo.json and its models, barrier.json and
# its entries, curves and diagnostics, a checkpoint's meta, swa.json, plane.json,
# redundancy.json and the dynamics JSON.
DOCUMENT_KEYS = {
    "format", "config", "seed", "versions", "params_sha256", "num_models", "models", "history",
    "train_seconds", "data_source", "train_loss", "test_loss", "train_acc", "test_acc",
    "diverged", "collapsed",
    "zoo", "split", "bn_reset", "batches", "batch_size", "precision", "reference", "alphas",
    "excluded", "naive", "methods", "aligned", "diagnostics", "seconds",
    "pairs", "loss", "acc", "epsilon", "barrier", "rebasin_barrier",
    "settings", "sweep_seconds", "info", "fraction_moved", "perms", "repaired", "skipped",
    "fit_samples", "triples", "weight_cycle_consistency", "activation_cycle_consistency",
    "weight_restarts", "objective", "median_epsilon_spread", "max_epsilon_spread",
    "epoch", "leaves", "sha256", "model", "epochs", "lr", "start_loss", "sample_loss",
    "average_loss", "samples", "xs", "ys", "corners", "corner_loss", "threshold", "width",
    "reduced_width", "reduced_test_loss", "reduced_test_acc", "zoos", "labels", "groups",
    "origin", "references", "table", "group", "eps_within", "eps_across",
}
# Where one of those words indexes something else, and what: (module, key) -> what.
OTHER_THINGS = {
    ("data/cifar10.py", "labels"): "a CIFAR-10 batch as its pickle holds it",
    ("data/cifar10.py", "sha256"): "the SOURCE.json of an installed dataset",
    **{("zoo/training.py", k): "the evaluations collected for history.npz"
       for k in ("test_loss", "test_acc")},
    **{("report/figures.py", k): "history.npz" for k in ("train_loss", "test_loss")},
    **{("report/tensorboard.py", k): "history.npz" for k in ("train_loss",)},
    ("report/tables.py", "width"): "a zoo table row",
    ("report/step_ledger.py", "seconds"): "a reproduction ledger step (StepRecord)",
    **{(m, "width"): "a row of Table 5.1" for m in ("cli/redundancy.py",
                                                      "report/redundancy_figures.py")},
    **{("report/markdown.py", k): "a row of a CSV table the report quotes"
       for k in ("width", "models", "diverged", "collapsed", "test_loss", "test_acc", "pairs",
                 "seconds")},
}


def lookups_by_key(tree):
  """(line, key) of every `x["key"]` and `x.get("key", ...)` (also pop, setdefault)."""
  for node in ast.walk(tree):
    key = None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
      key = node.slice.value
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr in ("get", "pop", "setdefault") and node.args
          and isinstance(node.args[0], ast.Constant)):
      key = node.args[0].value
    if isinstance(key, str):
      yield node.lineno, key


def test_no_result_document_is_read_by_key_outside_the_records():
  found, other = [], set()
  for path in sorted(PACKAGE.rglob("*.py")):
    module = path.relative_to(PACKAGE).as_posix()
    if module in RECORD_MODULES:
      continue
    for line, key in lookups_by_key(ast.parse(path.read_text())):
      if (module, key) in OTHER_THINGS:
        other.add((module, key))
      elif key in DOCUMENT_KEYS:
        found.append(f"lmc_jax/{module}:{line}: [{key!r}]")
  assert not found, ("read a result document through its record (lmc_jax.records), not by "
                     "key:\n" + "\n".join(found))
  assert other == set(OTHER_THINGS), f"no longer indexed: {sorted(set(OTHER_THINGS) - other)}"


def test_the_scan_sees_a_lookup_by_key():
  code = 'doc["methods"]["weight"]\nx = result.get("aligned", {})\nnames = ["naive"]\n'
  assert sorted(lookups_by_key(ast.parse(code))) == [(1, "methods"), (1, "weight"), (2, "aligned")]
