"""experiments.merge end to end on two tiny MNIST-free zoos (Moons split by shard): the
record reads back through its schema check, the merged networks on disk recompute in
numpy to the accuracies merge.json records, and bad input is refused in one line with
nothing written."""
import json

import numpy as np

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.merge_records import MergeResult
from lmc_jax.schema import SchemaError
from lmc_jax.zoo.io import save_zoo
from lmc_jax.zoo.training import train_zoo
from tests.helpers.cli import refused, run_cli, snapshot


def _zoo(directory, split, width=6):
  config = default_config("moons", hidden=(width,), num_models=2, epochs=3, n_train=128,
                          n_test=128, train_split=split)
  zoo = train_zoo(config, load_dataset(config), log=None)
  save_zoo(directory, config, zoo.variables, zoo.metrics)


def _numpy_forward(flat, x):
  h = np.maximum(x @ flat["params/Dense_0/kernel"] + flat["params/Dense_0/bias"], 0)
  return h @ flat["params/Dense_1/kernel"] + flat["params/Dense_1/bias"]


def test_merge_command_writes_what_recomputes(tmp_path):
  a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
  _zoo(a, "shard:0/2")
  _zoo(b, "shard:1/2")
  _zoo(c, "shard:1/2", width=7)
  out = tmp_path / "out"
  before = snapshot(tmp_path)
  refused(run_cli("merge", f"--zoo={a},{c}", f"--out={out}"), "--zoo", "widths")
  refused(run_cli("merge", f"--zoo={a},{b}", "--models=0,5", f"--out={out}"), "--models",
          "model 5")
  assert snapshot(tmp_path) == before
  r = run_cli("merge", f"--zoo={a},{b}", "--method=naive,weight,zip", "--repair",
              "--alphas=3", f"--out={out}", "--fit_samples=64")
  assert r.returncode == 0, r.stderr[-3000:]
  doc = json.loads((out / "merge.json").read_text())
  result = MergeResult.from_json(doc, out / "merge.json")
  assert len(result.pairings) == 4 and result.pairings[0].tolist() == [0, 0]
  data = load_dataset(default_config("moons", n_train=128, n_test=128))
  for name, entry in result.methods.items():
    flat = dict(np.load(out / "merged" / f"{name}.npz"))
    z = _numpy_forward(flat, data.x_test.astype(np.float64))[:, 0]
    assert abs(np.mean((z > 0) == data.y_test) - entry.acc[0, 0]) < 1e-6, name
  assert np.allclose(result.methods["weight"].curve_acc[:, 0], result.parent_acc[0, :, 0])
  for name in ("merge_methods.csv", "merge_accuracy_bars.png", "merge_accuracy_vs_alpha.png"):
    assert (out / name).stat().st_size > 0
  doc["methods"]["weight"]["acc"] = "high"
  try:
    MergeResult.from_json(doc, out / "merge.json")
    raise AssertionError("a wrong merge.json was read")
  except SchemaError as e:
    assert "methods.weight.acc" in str(e)


def test_partial_zip_through_the_command(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  _zoo(a, "shard:0/2")
  _zoo(b, "shard:1/2")
  out = tmp_path / "out"
  before = snapshot(tmp_path)
  refused(run_cli("merge", f"--zoo={a},{b}", "--zip_layers=3", f"--out={out}"),
          "--zip_layers=3", "2 layers", "0..2")
  refused(run_cli("merge", f"--zoo={a},{b}", "--zip_layers=1", "--method=naive",
                  f"--out={out}"), "--zip_layers", "zip")
  assert snapshot(tmp_path) == before
  r = run_cli("merge", f"--zoo={a},{b}", "--method=zip", "--zip_layers=1", "--models=0,1",
              f"--out={out}", "--fit_samples=64")
  assert r.returncode == 0, r.stderr[-3000:]
  result = MergeResult.from_json(json.loads((out / "merge.json").read_text()), out / "merge.json")
  assert list(result.methods) == ["zip1"] and result.settings["zip_layers"] == 1
  flat = dict(np.load(out / "merged" / "zip1.npz"))
  assert flat["params/Dense_0/kernel"].shape[0] == 2
  np.testing.assert_array_equal(flat["params/Dense_0/kernel"][0], flat["params/Dense_0/kernel"][1])
  x, y = (lambda d: (d.x_test.astype(np.float64), d.y_test))(
      load_dataset(default_config("moons", n_train=128, n_test=128)))
  z = [_numpy_forward({k: v[m] for k, v in flat.items()}, x)[:, 0] for m in range(2)]
  # the side-by-side logits [0, z0, 0, z1]: class 1 where the largest is a z and above 0
  joint = (np.maximum(z[0], z[1]) > 0).astype(int)
  assert abs(np.mean(joint == y) - result.methods["zip1"].acc[0, 0]) < 1e-6
