"""zoo.json and barrier.json that parse but are wrong are refused by field (zoo.json) or
recomputed with a warning (a barrier.json the analysis would reuse), never used: their
records' `from_json` is the check. barrier.json is checked in every format this version
reads (format 2 laid out by `tests.helpers.legacy`)."""
import copy
import json
import shutil

import numpy as np
import pytest

from lmc_jax.analysis import barrier as barrier_mod
from lmc_jax.analysis.barrier import analyse_zoo, read_barrier_json
from lmc_jax.barrier_records import BarrierResult
from lmc_jax.errors import LmcError
from lmc_jax.records import ZooRecord
from lmc_jax.result_files import BARRIER_JSON, ZOO_JSON
from lmc_jax.schema import SchemaError
from lmc_jax.zoo.io import read_zoo_json
from tests.helpers import saved_moons_zoo
from tests.helpers.legacy import as_format_2


def check_zoo_doc(doc, path):
  return ZooRecord.from_json(doc, path)


def check_barrier_doc(doc, path, num_models=None, perm_sizes=None):
  return BarrierResult.from_json(doc, path, num_models, perm_sizes)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
  """A 3-model width-4 Moons zoo with a barrier.json of weight and activation matching,
  REPAIR and the diagnostics."""
  d = tmp_path_factory.mktemp("schema") / "moons_w4"
  saved_moons_zoo(d, 4)
  analyse_zoo(d, methods=("weight", "activation"), repair=True, diagnostics=True)
  return d


def _docs(zoo):
  return (json.loads((zoo / ZOO_JSON).read_text()), json.loads((zoo / BARRIER_JSON).read_text()))


def _set(path, value):
  """A damage: the field at `path` (keys and indices) set to `value`."""
  def damage(doc):
    for key in path[:-1]:
      doc = doc[key]
    doc[path[-1]] = value
  return damage


def _drop(path):
  def damage(doc):
    for key in path[:-1]:
      doc = doc[key]
    del doc[path[-1]]
  return damage


ZOO_DAMAGES = [
    ("format not an int", _set(["format"], "1"), "format is '1', not an integer"),
    ("config missing", _drop(["config"]), "config is missing"),
    ("config a list", _set(["config"], [1]), "config is [1], not a JSON object"),
    ("config section unknown", _set(["config", "colour"], "red"),
     "config has unknown sections ['colour']"),
    ("config key unknown", _set(["config", "model", "colour"], "red"),
     "config.model has unknown keys ['colour']"),
    ("lr a string", _set(["config", "optim", "lr"], "fast"),
     "config.optim.lr must be a finite number, got 'fast'"),
    ("hidden empty", _set(["config", "model", "hidden"], []),
     "config.model.hidden must be one or more integer widths, got []"),
    ("hidden floats", _set(["config", "model", "hidden"], [4.5]),
     "config.model.hidden must be one or more integer widths, got [4.5]"),
    ("epochs a bool", _set(["config", "train", "epochs"], True),
     "config.train.epochs must be an integer, got True"),
    ("momentum out of range", _set(["config", "optim", "momentum"], 1.5),
     "config.optim.momentum must be < 1, got 1.5"),
    ("sha not hex", _set(["params_sha256"], "abc"), "params_sha256 is 'abc', not the 64 hex"),
    ("sha missing", _drop(["params_sha256"]), "params_sha256 is missing"),
    ("num_models zero", _set(["num_models"], 0), "num_models is 0, outside >= 1"),
    ("num_models a string", _set(["num_models"], "3"), "num_models is '3', not an integer"),
    ("num_models not the config's", _set(["num_models"], 2),
     "num_models is 2 but config.train.num_models is 3"),
    ("models truncated", lambda d: d["models"].pop(), "models has 2 entries but num_models is 3"),
    ("model not a dict", _set(["models", 1], "x"), "models[1] is 'x', not a JSON object"),
    ("diverged not a bool", _set(["models", 1, "diverged"], "no"),
     "models[1].diverged is 'no', not true or false"),
    ("diverged missing", _drop(["models", 0, "diverged"]), "models[0].diverged is missing"),
    ("metric missing", _drop(["models", 2, "train_acc"]), "models[2].train_acc is missing"),
    ("metric a string", _set(["models", 2, "test_loss"], "0.1"),
     "models[2].test_loss is '0.1', not a finite number"),
    ("null loss, not diverged", _set(["models", 0, "test_loss"], None),
     "models[0].test_loss is null but the model is not marked diverged"),
    ("collapsed not a bool", _set(["models", 0, "collapsed"], 1), "models[0].collapsed is 1"),
    ("only other keys", lambda d: d.clear() or d.update(x=1), "config is missing"),
]


@pytest.mark.parametrize("name, damage, words", ZOO_DAMAGES, ids=[c[0] for c in ZOO_DAMAGES])
def test_a_wrong_zoo_json_is_refused_naming_the_field(zoo, name, damage, words):
  doc, _ = _docs(zoo)
  damage(doc)
  path = zoo / ZOO_JSON
  with pytest.raises(SchemaError) as e:
    check_zoo_doc(doc, path)
  msg = str(e.value)
  assert msg.startswith(f"{path}: ") and words in msg, msg
  assert msg.endswith(f"`python -m experiments.zoo --out={zoo.parent} ... --overwrite` (the "
                      "flags it was trained with).")
  assert ". " not in msg.replace("... ", ""), msg  # one sentence


def test_a_good_zoo_json_passes_and_a_diverged_model_may_hold_nulls(zoo):
  doc, _ = _docs(zoo)
  assert check_zoo_doc(copy.deepcopy(doc), "z.json").to_json() == doc  # read whole, unchanged
  doc["models"][1].update(test_loss=None, train_loss=float("nan"), diverged=True)
  record = check_zoo_doc(doc, "z.json")
  assert np.isnan(record.models[1].test_loss) and record.usable == (0, 2)
  old = copy.deepcopy(doc)  # a zoo.json written before a config field existed
  del old["config"]["model"]["layernorm_eps"], old["format"]
  check_zoo_doc(old, "z.json")
  with pytest.raises(SchemaError, match=r"z.json: the file is \[1\], not a JSON object"):
    check_zoo_doc([1], "z.json")


def test_read_zoo_json_refuses_a_wrong_one_and_changes_nothing(zoo, tmp_path):
  d = tmp_path / "z"
  shutil.copytree(zoo, d)
  doc = json.loads((d / ZOO_JSON).read_text())
  doc["models"][1]["diverged"] = "maybe"
  (d / ZOO_JSON).write_text(json.dumps(doc))
  before = (d / ZOO_JSON).read_bytes()
  with pytest.raises(LmcError, match=r"zoo.json: models\[1\].diverged is 'maybe'"):
    read_zoo_json(d)
  assert (d / ZOO_JSON).read_bytes() == before
  (d / ZOO_JSON).write_text("[1, 2")
  with pytest.raises(LmcError, match="not a valid zoo description .*--overwrite"):
    read_zoo_json(d)


_EYE = [[float(i == j) for j in range(4)] for i in range(4)]
BARRIER_DAMAGES = [
    ("alphas empty", _set(["alphas"], []), "alphas is empty"),
    ("alphas missing", _drop(["alphas"]), "alphas is missing"),
    ("alpha a string", _set(["alphas", 3], "x"), "alphas[3] is 'x', not a finite number"),
    ("naive missing", _drop(["naive"]), "naive is missing"),
    ("pair out of range", _set(["naive", "pairs", 0], [0, 9]),
     "naive.pairs[0] is 9, outside 0..2"),
    ("pair not a pair", _set(["methods", "weight", "pairs", 1], [0]),
     "methods.weight.pairs[1] is [0], not a pair"),
    ("pair of floats", _set(["naive", "pairs", 2], [1.0, 2.0]),
     "naive.pairs[2] is 1.0, not an integer"),
    ("loss truncated", lambda d: d["naive"]["loss"].pop(), "naive.loss has 2 entries, expected 3"),
    ("curve truncated", lambda d: d["methods"]["weight"]["loss"][0].pop(),
     "methods.weight.loss[0] has 10 entries, expected 11"),
    ("acc missing", _drop(["naive", "acc"]), "naive.acc is missing"),
    ("measure a string", _set(["methods", "weight", "epsilon", 1], "x"),
     "methods.weight.epsilon[1] is 'x', not a number or null"),
    ("measure truncated", lambda d: d["methods"]["activation"]["barrier"].pop(),
     "methods.activation.barrier has 2 entries, expected 3"),
    ("perm repeats", _set(["methods", "weight", "perms", 1, "P_0"], [0, 0, 1, 2]),
     "methods.weight.perms[1].P_0 is not a permutation of 0..3"),
    ("perm of floats", _set(["methods", "activation", "perms", 2, "P_0"], [0.0, 1.0, 2.0, 3.0]),
     "methods.activation.perms[2].P_0 is not a permutation of 0..3"),
    ("perm too short", _set(["methods", "weight", "perms", 1, "P_0"], [0, 1, 2]),
     "methods.weight.perms[1].P_0 has 3 entries, expected 4"),
    ("perm renamed", lambda d: d["methods"]["weight"]["perms"][0].update(Q=d["methods"]["weight"][
        "perms"][0].pop("P_0")), "methods.weight.perms[0] names permutations ['Q']"),
    ("perms one short", lambda d: d["methods"]["weight"]["perms"].pop(),
     "methods.weight.perms has 2 entries, expected 3"),
    ("method not a dict", _set(["methods", "activation"], 3), "methods.activation is 3"),
    ("weight without curves", _drop(["methods", "weight", "pairs"]),
     "methods.weight.pairs is missing"),
    ("reference out of range", _set(["reference"], 7), "reference is 7, outside 0..2"),
    ("REPAIR truncated", lambda d: d["methods"]["activation"]["repaired"]["epsilon"].pop(),
     "methods.activation.repaired.epsilon has 2 entries, expected 3"),
    ("naive's REPAIR not a dict", _set(["naive", "repaired"], [1]),
     "naive.repaired is [1], not a JSON object"),
    ("REPAIR's inputs a string", _set(["methods", "weight", "repaired", "fit_samples"], "all"),
     "methods.weight.repaired.fit_samples is 'all', not an integer"),
    ("a format-2 key in format 3", lambda d: d["methods"].update(
        {"weight+repair": d["methods"]["weight"].pop("repaired")}),
     "methods.weight+repair is an entry of format 2, not 5"),
    ("map not orthogonal", _set(["methods", "weight", "maps"], [{"P_0": _EYE}] * 2 + [
        {"P_0": [[2 * v for v in row] for row in _EYE]}]),
     "methods.weight.maps[2].P_0 is not an orthogonal 4x4 matrix"),
    ("map of another group", _set(["methods", "weight", "maps"], [{"Q": _EYE}] * 3),
     "methods.weight.maps[0] names groups ['Q'] the network does not have"),
    ("map too small", _set(["methods", "weight", "maps"], [{"P_0": _EYE[:3]}] * 3),
     "methods.weight.maps[0].P_0 has 3 entries, expected 4"),
    ("maps one short", _set(["methods", "weight", "maps"], [{"P_0": _EYE}] * 2),
     "methods.weight.maps has 2 entries, expected 3"),
    ("diagnostics without restarts", _drop(["diagnostics", "weight_restarts"]),
     "diagnostics.weight_restarts is missing"),
    ("cycle consistency a string", _set(["diagnostics", "activation_cycle_consistency"], "x"),
     "diagnostics.activation_cycle_consistency is 'x', not a list"),
    ("spread a string", _set(["diagnostics", "weight_restarts", "max_epsilon_spread"], "big"),
     "diagnostics.weight_restarts.max_epsilon_spread is 'big', not a finite number"),
]
# The same checks on a format-2 file (what the last release wrote), in its own field names.
FORMAT_2_DAMAGES = [
    ("pair not a pair", _set(["aligned", "pairs", 1], [0]), "aligned.pairs[1] is [0], not a pair"),
    ("curve truncated", lambda d: d["aligned"]["loss"][0].pop(),
     "aligned.loss[0] has 10 entries, expected 11"),
    ("measure a string", _set(["aligned", "epsilon", 1], "x"),
     "aligned.epsilon[1] is 'x', not a number or null"),
    ("weight without aligned", _drop(["aligned"]), "aligned is missing though methods.weight"),
    ("perm repeats", _set(["methods", "weight", "perms", 1, "P_0"], [0, 0, 1, 2]),
     "methods.weight.perms[1].P_0 is not a permutation of 0..3"),
    ("REPAIR truncated", lambda d: d["methods"]["activation+repair"]["epsilon"].pop(),
     "methods.activation+repair.epsilon has 2 entries, expected 3"),
    ("naive's REPAIR truncated", lambda d: d["methods"]["naive+repair"]["loss"].pop(),
     "methods.naive+repair.loss has 2 entries, expected 3"),
    ("REPAIR of no method", _drop(["methods", "activation"]),
     "methods.activation+repair is there but methods.activation is not"),
]


def _refused(doc, path, words):
  with pytest.raises(SchemaError) as e:
    check_barrier_doc(doc, path, num_models=3, perm_sizes={"P_0": 4})
  msg = str(e.value)
  assert msg.startswith(f"{path}: ") and words in msg, msg
  assert msg.endswith(f"recompute it with `python -m experiments.barrier --zoo={path.parent} "
                      "--recompute`.")


@pytest.mark.parametrize("name, damage, words", BARRIER_DAMAGES,
                         ids=[c[0] for c in BARRIER_DAMAGES])
def test_a_wrong_barrier_json_is_refused_naming_the_field(zoo, name, damage, words):
  _, doc = _docs(zoo)
  damage(doc)
  _refused(doc, zoo / BARRIER_JSON, words)


@pytest.mark.parametrize("name, damage, words", FORMAT_2_DAMAGES,
                         ids=[c[0] for c in FORMAT_2_DAMAGES])
def test_a_wrong_format_2_barrier_json_is_refused_naming_the_field(zoo, name, damage, words):
  _, doc = _docs(zoo)
  doc = as_format_2(doc)
  check_barrier_doc(copy.deepcopy(doc), zoo / BARRIER_JSON, 3, {"P_0": 4})  # whole, it passes
  damage(doc)
  _refused(doc, zoo / BARRIER_JSON, words)


def test_a_good_barrier_json_passes_with_nulls_and_without_sizes(zoo):
  _, doc = _docs(zoo)
  assert check_barrier_doc(copy.deepcopy(doc), "b.json", 3, {"P_0": 4}).to_json() == doc
  assert check_barrier_doc(as_format_2(doc), "b.json", 3).to_json() == doc  # same records
  doc["naive"]["loss"][0][4] = None  # NaN is written as null
  doc["naive"]["epsilon"][0] = None
  record = check_barrier_doc(doc, "b.json", 3, {"P_0": 4})
  assert np.isnan(record.naive.loss[0, 4]) and np.isnan(record.naive.epsilon[0])
  check_barrier_doc(doc, "b.json")
  doc["methods"]["ste"] = {"skipped": "too slow", "settings": {}}
  del doc["methods"]["weight"]  # a run stopped after the naive curves
  record = check_barrier_doc(doc, "b.json", 3)
  assert record.method("ste").skipped == "too slow" and record.curves("aligned") is None


def _count_alignments(monkeypatch):
  calls = []
  real = barrier_mod.align_by

  def counting(name, *args, **kwargs):
    calls.append(name)
    return real(name, *args, **kwargs)
  monkeypatch.setattr(barrier_mod, "align_by", counting)
  return calls


@pytest.mark.parametrize("damage, words", [
    (_set(["methods", "weight", "perms", 1, "P_0"], [3, 3, 3, 3]),
     "methods.weight.perms[1].P_0 is not a permutation of 0..3"),
    (lambda d: d["methods"]["activation"]["loss"].pop(),
     "methods.activation.loss has 2 entries, expected 3"),
    (_set(["methods", "weight", "perms", 0], {"P_0": [0, 1, 2, 3], "P_9": [0]}),
     "methods.weight.perms[0] names permutations ['P_0', 'P_9']"),
])
def test_a_damaged_barrier_json_is_recomputed_with_a_warning(zoo, tmp_path, monkeypatch,
                                                             caplog, damage, words):
  d = tmp_path / "z"
  shutil.copytree(zoo, d)
  good = json.loads((d / BARRIER_JSON).read_text())
  bad = copy.deepcopy(good)
  damage(bad)
  (d / BARRIER_JSON).write_text(json.dumps(bad))
  calls = _count_alignments(monkeypatch)
  result = analyse_zoo(d, methods=("weight", "activation"), diagnostics=True)
  assert words in caplog.text and "not reused" in caplog.text
  assert calls == ["weight", "activation"]  # nothing of the damaged file was kept
  on_disk = json.loads((d / BARRIER_JSON).read_text())
  assert on_disk["methods"]["weight"]["perms"] == good["methods"]["weight"]["perms"]
  assert result.curves("aligned").epsilon.tolist() == \
      pytest.approx(good["methods"]["weight"]["epsilon"])


def test_a_barrier_json_that_is_not_json_is_recomputed_and_a_good_one_reused(zoo, tmp_path,
                                                                            monkeypatch, caplog):
  d = tmp_path / "z"
  shutil.copytree(zoo, d)
  text = (d / BARRIER_JSON).read_text()
  (d / BARRIER_JSON).write_text(text[: len(text) // 2])
  calls = _count_alignments(monkeypatch)
  analyse_zoo(d, methods=("weight", "activation"), diagnostics=True)
  assert "is not readable JSON" in caplog.text and calls == ["weight", "activation"]
  analyse_zoo(d, methods=("weight", "activation"), diagnostics=True)  # now whole: kept
  assert calls == ["weight", "activation"]


def test_read_barrier_json_refuses_a_damaged_one(zoo, tmp_path):
  d = tmp_path / "z"
  shutil.copytree(zoo, d)
  doc = json.loads((d / BARRIER_JSON).read_text())
  doc["naive"]["pairs"][0] = [0, 5]
  (d / BARRIER_JSON).write_text(json.dumps(doc))
  with pytest.raises(LmcError, match=r"barrier.json: naive.pairs\[0\] is 5, outside 0..2; "
                                     "recompute it with"):
    read_barrier_json(d, 3)
  (d / BARRIER_JSON).write_text("{")
  with pytest.raises(LmcError, match="barrier.json is not readable JSON .*--recompute"):
    read_barrier_json(d)


def test_the_zoo_summary_leaves_out_a_damaged_zoo_with_a_warning(zoo, tmp_path, caplog):
  from lmc_jax.report.tables import write_zoo_summary
  shutil.copytree(zoo, tmp_path / "moons_w4")
  shutil.copytree(zoo, tmp_path / "moons_w8")
  doc = json.loads((zoo / ZOO_JSON).read_text())
  doc["config"]["model"]["hidden"] = [8.5]
  (tmp_path / "moons_w8" / ZOO_JSON).write_text(json.dumps(doc))
  path = write_zoo_summary(tmp_path, "moons")
  assert len(path.read_text().splitlines()) == 2  # the header and the whole zoo
  assert "left out of the zoo summary" in caplog.text and "config.model.hidden" in caplog.text
