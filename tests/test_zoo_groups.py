import jax
import numpy as np
import pytest

from lmc_jax.align.weight import weight_matching
from lmc_jax.analysis.groups import combine_zoos, group_epsilon_matrices
from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import pair_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.symmetry.spec import apply_permutation
from lmc_jax.zoo.runs import run_zoo


@pytest.fixture(scope="module")
def two_zoos(tmp_path_factory):
  root = tmp_path_factory.mktemp("groups")
  dirs = []
  for opt, lr in (("adamw", 0.1), ("rmsprop", 0.03)):
    c = default_config("moons", hidden=(6,), num_models=3, epochs=15, optimizer=opt, lr=lr,
                       weight_decay=0.0, init="kaiming_normal")
    d = root / opt
    run_zoo(c, d)
    dirs.append(d)
  return dirs


def test_combined_zoo_and_its_matrices(two_zoos):
  zoo = combine_zoos(two_zoos)
  assert zoo.labels == ["kaiming_normal / adamw", "kaiming_normal / rmsprop"]
  assert zoo.groups.tolist() == [0, 0, 0, 1, 1, 1]
  found = group_epsilon_matrices(zoo, pairwise=True)
  mats, refs = found.matrices, found.references
  assert set(mats) == {"naive", "pairwise", *refs}
  assert refs["best"] == int(np.argmin(zoo.test_loss))
  for g in range(2):
    members = np.where(zoo.groups == g)[0]
    assert refs[f"best_of_{zoo.labels[g]}"] == members[np.argmin(zoo.test_loss[members])]
  for m in mats.values():
    assert m.shape == (6, 6) and np.allclose(m, m.T) and np.all(np.diag(m) == 0)
  # Oracle for one pair: align j to i directly, interpolate, take epsilon.
  i, j = 1, 4
  data = load_dataset(zoo.config)
  spec = spec_for_config(zoo.config)
  take = lambda k: jax.tree_util.tree_map(lambda v: v[k], zoo.params)
  pairs = np.array([[a, b] for a in range(6) for b in range(a + 1, 6)])
  p = int(np.where((pairs[:, 0] == i) & (pairs[:, 1] == j))[0][0])
  res = weight_matching(jax.random.fold_in(jax.random.key(0), p), spec, take(i), take(j))
  both = jax.tree_util.tree_map(lambda a, b: np.stack([a, b]), take(i),
                                apply_permutation(spec, res.perm, take(j)))
  c = pair_sweep(zoo.model, both, [[0, 1]], data.x_test, data.y_test)
  assert mats["pairwise"][i, j] == pytest.approx(float(epsilon(c.loss, c.alphas)[0]), abs=1e-6)


def test_architectures_must_agree(two_zoos, tmp_path):
  other = default_config("moons", hidden=(5,), num_models=2, epochs=1)
  run_zoo(other, tmp_path / "w5")
  with pytest.raises(LmcError, match="architecture"):
    combine_zoos([two_zoos[0], tmp_path / "w5"])


def test_zoos_sharing_seed_and_init_are_flagged(two_zoos, caplog):
  # Both fixture zoos use seed 0 and kaiming_normal: model k starts identical in both.
  combine_zoos(two_zoos)
  assert "initialisation in the other" in caplog.text
