"""A ResNet-20 zoo trains, aligns by every method that can run on it, and sweeps from the
command line, as a user runs it (a handful of MNIST images, one epoch: a check of the whole
path, not of what the nets learn; the BatchNorm reset, REPAIR's statistics and activation
matching each see the 32 training images, the sweeps 16 test images)."""
import json

import numpy as np

from tests.test_entry_points import curves_of, run


def test_resnet20_zoo_trains_aligns_repairs_and_sweeps_from_the_cli(tmp_path):
  r = run("zoo", "--dataset=mnist", "--arch=resnet20", "--width=1", "--num_models=2",
          "--epochs=1", "--train_subset=32", "--test_subset=16", f"--out={tmp_path}")
  assert r.returncode == 0, r.stderr
  zoo = tmp_path / "mnist_resnet20_w1"
  r = run("barrier", f"--zoo={zoo}", "--align=weight,activation,mergemany,exact", "--repair",
          "--diagnostics", "--bn_reset_batches=1", "--fit_samples=32")
  assert r.returncode == 0, r.stderr
  assert "mergemany+repair" in r.stdout
  res = json.loads((zoo / "barrier.json").read_text())
  naive = np.asarray(res["naive"]["loss"])
  # Exact search can not enumerate 12 groups of 16-64 channels; it says so and is skipped.
  assert "permutations" in res["methods"]["exact"]["skipped"]
  for name in ("weight", "activation", "mergemany"):
    entry = curves_of(res, name)
    assert "skipped" not in entry, entry.get("skipped")
    for perm in entry["perms"][1]:
      assert sorted(entry["perms"][1][perm]) == list(range(len(entry["perms"][1][perm])))
    # Permuting a model leaves its function alone: the ends of every line are unchanged.
    np.testing.assert_allclose(np.asarray(entry["loss"])[:, [0, -1]], naive[:, [0, -1]],
                               rtol=1e-3, err_msg=name)
  for name in ("naive+repair", "weight+repair", "activation+repair", "mergemany+repair"):
    entry = curves_of(res, name)
    assert "skipped" not in entry and len(entry["loss"][0]) == len(res["alphas"]), name
  restarts = res["diagnostics"]["weight_restarts"]  # the diagnostics ran on the conv zoo
  assert restarts["models"] == [1] and len(restarts["epsilon"][0]) == 5
