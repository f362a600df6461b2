"""A ViT zoo on MNIST and a transformer zoo on modular addition train, align by weight and
activation matching, and sweep from the command line, as a user runs them (tiny: width 1,
one block, a few hundred images or a small modulus, one epoch: a check of the whole path,
not of what the nets learn); bad input is refused in one line, exit 2, nothing written."""
import json

import numpy as np
import pytest

from tests.helpers.cli import refused, run_cli
from tests.test_entry_points import curves_of


def _trains_aligns_and_sweeps(tmp_path, zoo_name, *flags):
  r = run_cli("zoo", "--width=1", "--num_models=2", "--epochs=1", f"--out={tmp_path}", *flags)
  assert r.returncode == 0, r.stderr[-3000:]
  zoo = tmp_path / zoo_name
  r = run_cli("barrier", f"--zoo={zoo}", "--align=weight,activation")
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads((zoo / "barrier.json").read_text())
  naive = np.asarray(res["naive"]["loss"])
  for name in ("weight", "activation"):
    entry = curves_of(res, name)
    assert "skipped" not in entry, entry.get("skipped")
    assert any(len(p) == 2 for p in entry["perms"][1].values())  # the two heads moved as blocks
    # Permuting a model leaves its function alone: the ends of every line are unchanged.
    np.testing.assert_allclose(np.asarray(entry["loss"])[:, [0, -1]], naive[:, [0, -1]],
                               rtol=1e-4, err_msg=name)
  assert list((tmp_path / "figures").glob("*_curves_aligned.png"))


def test_vit_zoo_trains_aligns_and_sweeps_from_the_cli(tmp_path):
  _trains_aligns_and_sweeps(tmp_path, "mnist_vit_w1", "--dataset=mnist", "--arch=vit",
                            "--train_subset=256", "--test_subset=64")


def test_transformer_zoo_on_modular_addition_from_the_cli(tmp_path):
  _trains_aligns_and_sweeps(tmp_path, "modular_addition_transformer_p7_w1",
                            "--dataset=modular_addition", "--modulus=7", "--heads=2")


@pytest.mark.parametrize("flags, words", [
    (["--arch=vit"], ("--arch is vit", "moons has no images")),
    (["--arch=rms_transformer"], ("--arch is rms_transformer", "moons has none")),
    (["--dataset=mnist", "--arch=vit", "--patch=5"], ("--patch is 5", "does not divide")),
    (["--dataset=mnist", "--arch=vit", "--heads=3"], ("--heads is 3", "does not divide")),
    (["--dataset=modular_addition", "--modulus=1"], ("--modulus must be >= 2",)),
])
def test_bad_input_is_refused_in_one_line_with_nothing_written(tmp_path, flags, words):
  refused(run_cli("zoo", *flags, "--width=1", "--num_models=1", "--epochs=1",
                  f"--out={tmp_path / 'runs'}"), *words)
  assert not (tmp_path / "runs").exists()
