"""The entry points run end to end as a user runs them, and refuse bad input cleanly (in the
test's process, `run_cli`; where the process is the point, `--help` and the installed
scripts, as a process)."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.lmc.measures import epsilon
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import num_params
from lmc_jax.study_records import PlaneRecord, RedundancyRecord, SwaRecord
from tests.helpers.cli import refused, run_cli, run_module, snapshot

ROOT = Path(__file__).resolve().parents[1]


def curves_of(res: dict, name: str) -> dict:
  """The entry of barrier.json (format 3, read as JSON) that holds the curves of `name`:
  'naive', 'aligned' (weight matching's), a method, or '<either>+repair'."""
  base, _, repair = name.partition("+")
  entry = res["naive"] if base == "naive" else \
      res["methods"]["weight" if base == "aligned" else base]
  return entry["repaired"] if repair else entry


run = run_cli  # the entry points in this process; absl's --help needs the process


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("runs")
  r = run("zoo", "--width=4,8", "--num_models=4", "--epochs=5", f"--out={out}")
  assert r.returncode == 0, r.stderr
  assert "test_acc" in r.stdout and "  4 " in r.stdout and "  8 " in r.stdout
  r = run("barrier", f"--runs={out}")
  assert r.returncode == 0, r.stderr
  assert "aligned median" in r.stdout
  return out


def test_zoo_and_barrier_end_to_end(runs):
  for w in (4, 8):
    d = runs / f"moons_w{w}"
    doc = json.loads((d / "zoo.json").read_text())
    assert doc["num_models"] == 4 and len(doc["models"]) == 4
    res = json.loads((d / "barrier.json").read_text())
    assert res["alphas"] == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert res["format"] == 5 and "aligned" not in res
    for which in ("naive", "aligned"):
      entry = curves_of(res, which)
      assert entry["pairs"] == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
      loss = np.asarray(entry["loss"])
      assert loss.shape == (6, 11) and np.asarray(entry["acc"]).shape == (6, 11)
      np.testing.assert_allclose(entry["epsilon"], epsilon(loss, res["alphas"]))
      assert {"barrier", "rebasin_barrier"} <= set(entry)
    assert res["methods"]["weight"]["reference"] == 0
    # Curve endpoints are the models' own test losses.
    naive = np.asarray(res["naive"]["loss"])
    assert naive[0, 0] == pytest.approx(doc["models"][0]["test_loss"], rel=1e-5)
    assert naive[0, -1] == pytest.approx(doc["models"][1]["test_loss"], rel=1e-5)
  figs = runs / "figures"
  for name in ("epsilon_vs_width", "curves_naive", "curves_aligned", "epsilon_matrix_naive",
               "epsilon_matrix_aligned"):
    png = figs / f"moons_{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
  assert (figs / "moons_epsilon_summary.csv").read_text().startswith("width,pairs,")
  assert (runs / "moons_zoo_summary.csv").read_text().count("\n") == 3
  # Each zoo keeps its per-epoch training loss, and the zoo entry point draws it.
  for w in (4, 8):
    with np.load(runs / f"moons_w{w}" / "history.npz") as f:
      assert f["train_loss"].shape == (5, 4) and np.isfinite(f["train_loss"]).all()
  assert (runs / "moons_training_history.png").stat().st_size > 10_000


def test_barrier_compares_alignment_methods_and_keeps_what_it_has(runs, tmp_path):
  every = "weight,activation,ste,sinkhorn,mergemany,exact"
  args = [f"--runs={runs}", f"--figures={tmp_path}", "--ste_steps=3", "--sinkhorn_steps=3"]
  r = run("barrier", f"--align={every}", "--repair", "--diagnostics", *args)
  assert r.returncode == 0, r.stderr
  assert "alignment methods" in r.stdout and "mergemany+repair" in r.stdout
  for w in (4, 8):
    res = json.loads((runs / f"moons_w{w}" / "barrier.json").read_text())
    for name in every.split(",") + ["naive+repair", "weight+repair", "exact+repair"]:
      entry = curves_of(res, name)  # the same fields for every set of curves
      assert {"pairs", "loss", "acc", "epsilon", "barrier", "rebasin_barrier"} <= set(entry)
      assert entry["pairs"] == res["naive"]["pairs"]
      np.testing.assert_allclose(entry["epsilon"],
                                 epsilon(np.asarray(entry["loss"]), res["alphas"]))
    # Weight matching is an entry like every other: its curves, permutations and REPAIR.
    assert {"loss", "perms", "repaired"} <= set(res["methods"]["weight"])
    assert not any(name.endswith("+repair") for name in res["methods"])
    for name in every.split(","):  # the permutations found are recorded with the curves
      perms = res["methods"][name]["perms"]
      assert len(perms) == 4 and sorted(perms[2]["P_0"]) == list(range(w))
      assert perms[0]["P_0"] == list(range(w))  # the reference stays as it is
    # Exact search is the optimum for the reference's pairs: no method beats it there.
    ref = [k for k, (i, j) in enumerate(res["naive"]["pairs"]) if 0 in (i, j)]
    best = np.asarray(res["methods"]["exact"]["epsilon"])[ref]
    for name in ("weight", "activation", "ste", "sinkhorn", "mergemany"):
      assert (np.asarray(curves_of(res, name)["epsilon"])[ref] >= best - 1e-6).all()
    assert len(res["diagnostics"]["weight_cycle_consistency"]) == 2  # triples (0,1,2), (0,2,3)
  png = tmp_path / "moons_alignment_methods.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "exact" in (tmp_path / "moons_alignment_methods.csv").read_text()
  # A second run with the same settings computes nothing again.
  before = (runs / "moons_w4" / "barrier.json").read_bytes()
  r = run("barrier", f"--align={every}", "--repair", *args)
  assert r.returncode == 0 and "kept the weight, activation" in r.stderr
  assert json.loads((runs / "moons_w4" / "barrier.json").read_bytes())["methods"] == \
      json.loads(before)["methods"]
  refused(run("barrier", f"--runs={runs}", "--align=weight,nearest"), "Unknown alignment method")


def test_a_zoo_written_by_one_run_is_reused_by_the_next(runs):
  before = snapshot(runs / "moons_w4")
  r = run("zoo", "--width=4", "--num_models=4", "--epochs=5", f"--out={runs}")
  assert r.returncode == 0, r.stderr
  assert "reusing" in r.stderr
  assert snapshot(runs / "moons_w4") == before


@pytest.mark.parametrize("args, words", [
    (["--dataset=imagenet"], ["imagenet"]),
    (["--width=0"], ["width", ">= 1"]),
    (["--width=four"], ["--width", "integers"]),
    (["--width="], ["--width", "empty"]),
    (["--width=4", "--optimizer=adam"], ["--optimizer", "adamw"]),  # absl's own check
    (["--width=4", "--no_such_flag=1"], ["no_such_flag"]),
    (["--width=4", "--num_models=0"], ["num_models"]),
    (["--width=4", "--num_models=2", "--epochs=1"], ["another config", "--overwrite"]),
])
def test_zoo_bad_input(runs, args, words):
  before = snapshot(runs)
  refused(run("zoo", f"--out={runs}", *args), *words)
  assert snapshot(runs) == before


def test_barrier_bad_input(runs, tmp_path):
  before = snapshot(runs)
  refused(run("barrier", f"--zoo={tmp_path / 'nope'}"), "does not exist")
  refused(run("barrier", f"--runs={tmp_path}"), "No zoo found")
  refused(run("barrier", f"--zoo={runs / 'moons_w4'}", "--reference=9", "--recompute"),
           "Reference model 9")
  assert snapshot(runs) == before

  # One model is nothing to compare.
  r = run("zoo", "--width=4", "--num_models=1", "--epochs=1", f"--out={tmp_path}")
  assert r.returncode == 0, r.stderr
  refused(run("barrier", f"--zoo={tmp_path / 'moons_w4'}"), "at least 2")

  # A corrupt params.npz: refused, and the barrier.json already there is left as it was.
  broken = tmp_path / "broken"
  import shutil
  shutil.copytree(runs / "moons_w8", broken)
  npz = broken / "params.npz"
  npz.write_bytes(npz.read_bytes()[:100])
  kept = (broken / "barrier.json").read_bytes()
  refused(run("barrier", f"--zoo={broken}", "--recompute"), str(npz), "train the zoo again")
  assert (broken / "barrier.json").read_bytes() == kept


def test_help_documents_every_flag():
  r = run_module("zoo", "--helpfull")
  for flag in ("--width", "--num_models", "--epochs", "--seed", "--optimizer", "--lr", "--init",
               "--layernorm", "--out"):
    assert flag in r.stdout


def test_fetch_and_zoo_say_what_to_do_without_data(tmp_path):
  refused(run("fetch", "--dataset=cifar10", f"--data_dir={tmp_path}"), "--source=PATH")
  refused(run("fetch", "--dataset=cifar10", f"--source={tmp_path / 'nope.tgz'}",
               f"--data_dir={tmp_path}"), "does not exist")
  refused(run("zoo", "--dataset=cifar10", "--width=4", "--num_models=2", "--epochs=1",
               f"--data_dir={tmp_path}", f"--out={tmp_path / 'runs'}"),
           "experiments.fetch --dataset=cifar10")
  refused(run("zoo", "--dataset=mnist", "--width=4", "--num_models=2", "--epochs=1",
               f"--data_dir={tmp_path}", f"--out={tmp_path / 'runs'}"),
           "experiments.fetch --dataset=mnist")
  assert not (tmp_path / "runs").exists()


def test_plane_end_to_end_and_bad_models(runs):
  r = run("plane", f"--zoo={runs / 'moons_w8'}", "--models=0,2,3", "--resolution=6")
  assert r.returncode == 0, r.stderr
  res = json.loads((runs / "moons_w8" / "plane.json").read_text())
  doc = json.loads((runs / "moons_w8" / "zoo.json").read_text())
  assert res["format"] == 1 and doc["format"] == 2
  for which in ("naive", "aligned"):
    assert np.asarray(res[which]["loss"]).shape == (6, 6)
    # The marked networks are the zoo's models, aligned or not (permutation keeps the loss).
    want = [doc["models"][k]["test_loss"] for k in (0, 2, 3)]
    np.testing.assert_allclose(res[which]["corner_loss"], want, rtol=1e-4)
  assert PlaneRecord.from_json(res, "plane.json").to_json() == res  # its record, whole
  assert (runs / "moons_w8" / "plane.png").read_bytes()[:4] == b"\x89PNG"
  refused(run("plane", f"--zoo={runs / 'moons_w8'}", "--models=0,0,1"), "three different")


def test_redundancy_end_to_end(runs):
  r = run("redundancy", f"--runs={runs}")
  assert r.returncode == 0, r.stderr
  assert "merged width" in r.stdout
  res = json.loads((runs / "moons_w8" / "redundancy.json").read_text())
  doc = json.loads((runs / "moons_w8" / "zoo.json").read_text())
  assert res["format"] == 1 and all(1 <= w <= 8 for w in res["reduced_width"])
  # Merging at cos > 0.99 barely changes a net: accuracy after stays within a sample or two.
  for k in range(4):
    assert abs(res["reduced_test_acc"][k] - doc["models"][k]["test_acc"]) <= 4 / 512
  assert len(res["naive"]["epsilon"]) == 6 and len(res["aligned"]["epsilon"]) == 6
  assert RedundancyRecord.from_json(res, "redundancy.json").to_json() == res
  for name in ("moons_redundancy_epsilon", "moons_unit_cosine", "moons_decision_boundaries"):
    assert (runs / "figures" / f"{name}.png").stat().st_size > 10_000


def test_swa_end_to_end(runs, tmp_path):
  r = run("swa", f"--zoo={runs / 'moons_w8'}", "--epochs=3", "--lr=0.01", "--model=1",
          f"--figures={tmp_path}")
  assert r.returncode == 0, r.stderr
  res = json.loads((runs / "moons_w8" / "swa.json").read_text())
  assert res["format"] == 1 and res["model"] == 1 and len(res["sample_loss"]) == 3
  assert res["samples"]["pairs"] == [[0, 1], [0, 2], [1, 2]]
  # The first running average is the first sample itself.
  assert res["average_loss"][0] == pytest.approx(res["sample_loss"][0], rel=1e-5)
  assert SwaRecord.from_json(res, "swa.json").to_json() == res
  assert (tmp_path / "moons_swa_losses.png").stat().st_size > 10_000
  refused(run("swa", f"--zoo={runs / 'moons_w8'}", "--epochs=1"), "--epochs must be >= 2")


def test_find_zoos_looks_one_level_down(tmp_path):
  from lmc_jax.zoo.runs import find_zoos
  for d in ("a", "b", "deep/c"):
    (tmp_path / d).mkdir(parents=True)
    (tmp_path / d / "zoo.json").write_text("{}")
  assert [p.name for p in find_zoos(tmp_path)] == ["a", "b"]
  assert find_zoos(tmp_path / "a") == [tmp_path / "a"]
  assert find_zoos(tmp_path / "missing") == []


def test_bench_prints_its_table_and_writes_json(tmp_path):
  # The widest width listed first: the plane and alignment still run on (and name) its zoo.
  r = run("bench", "--width=8,4", "--num_models=3", "--epochs=2", f"--json={tmp_path / 'b.json'}")
  assert r.returncode == 0, r.stderr
  for what in ("w4: train 3 models", "a call per step", "a call per epoch",
               "w8: 3 pairs x 11 alphas", "a call per batch", "w8: loss plane",
               "w8: weight-match 2 models to one", "w8: weight-match all 3 pairs", "floor s"):
    assert what in r.stdout
  res = json.loads((tmp_path / "b.json").read_text())
  assert res["format"] == 1
  plane = res["results"]["plane"]  # bytes: 16 per parameter of one net per grid point
  w8 = default_config("moons", hidden=(8,) * len(default_config("moons").model.hidden))
  w8_net = model_for(w8).init(jax.random.key(0), jnp.zeros((1, 2)))["params"]  # Moons: 2 inputs
  assert plane["bytes"] == 16 * num_params(w8_net) * plane["points"]
  for width in ("w4", "w8"):  # the loops and the sweep compute the same losses
    assert res["results"][width]["sweep"]["max_abs_diff"] < 1e-5
    training = res["results"][width]["training"]
    assert training["zoo_s"] > 0 and training["products_s"] > 0
    assert training["products_flops_per_s"] > 0
    assert f"{width} fp32: a training step's matrix products, each timed alone" in r.stdout
  assert res["results"]["plane"]["max_abs_diff"] < 1e-5
  assert res["results"]["alignment"]["max_rel_objective_diff"] < 1e-5
  assert res["rates"]["copy_bytes_per_s"] > 0 and res["rates"]["matmul_flops_per_s"] > 0
  refused(run("bench", "--num_models=2"), "--num_models must be >= 3")
  refused(run("bench", "--num_models=3", "--align_models=5"), "--align_models must be between")
  refused(run("bench", "--peer_only"), "--peer_only times a network against its PyTorch twin")


def test_console_scripts_and_module_entry_points_run_the_same_main():
  """Installed, `lmc-<name>` (and `python -m lmc_jax.cli.<name>`) is what `python -m
  experiments.<name>` is in a checkout; `experiments` itself is not installed."""
  import importlib.metadata
  import shutil
  r = subprocess.run([sys.executable, "-m", "lmc_jax.cli.zoo", "--help"], capture_output=True,
                     text=True, timeout=300, cwd=ROOT)
  assert "Train zoos of networks" in r.stdout and "--width" in r.stdout
  try:
    dist = importlib.metadata.distribution("lmc_jax")
  except importlib.metadata.PackageNotFoundError:
    pytest.skip("lmc_jax is not installed (pip install -e .)")
  scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
  assert scripts["lmc-barrier"] == "lmc_jax.cli.barrier:run" and len(scripts) == 10
  assert "experiments" not in (dist.read_text("top_level.txt") or "").split()
  if shutil.which("lmc-barrier"):
    r = subprocess.run(["lmc-barrier", "--help"], capture_output=True, text=True, timeout=300)
    assert "Linear mode connectivity of trained zoos" in r.stdout and "--ste_steps" in r.stdout
