"""An alignment method is one registration: a toy method defined here runs through
`align_by`, `analyse_zoo` and `experiments.barrier --align=`, with its own flag."""
import json

import numpy as np
import pytest
from absl import flags

from lmc_jax.align.registry import (
  Alignment,
  MethodSettings,
  Setting,
  align_by,
  all_settings,
  check_methods,
  method_names,
  register,
  unregister,
)
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.nn.architectures import model_for
from lmc_jax.result_files import BARRIER_JSON
from lmc_jax.symmetry.spec import apply_permutation, mlp_permutation_spec, perm_sizes
from lmc_jax.tree_utils import stack, take, to_numpy
from tests.helpers import saved_moons_zoo
from tests.helpers.cli import cli_module


def roll_perm(sizes, shift):
  return {p: np.roll(np.arange(n), shift) for p, n in sizes.items()}


@pytest.fixture
def toy_method():
  """'toyroll': every model but the reference rolls its hidden units by `toyroll_shift`."""
  @register("toyroll", "roll every hidden layer's units (a test method)",
            uses=("seed",), settings=(Setting("toyroll_shift", 1, "Units to roll by."),))
  def align(task):
    sizes = perm_sizes(task.spec, task.member(task.reference))
    return Alignment(task.star(lambda k: roll_perm(sizes, task.settings.toyroll_shift)),
                     {"rolled": task.movers})
  yield "toyroll"
  unregister("toyroll")


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
  d = tmp_path_factory.mktemp("runs") / "moons_w6"
  config, zoo = saved_moons_zoo(d, 6, epochs=3)
  return d, config, to_numpy(zoo.params)


def test_a_registered_method_is_listed_with_its_settings(toy_method):
  assert toy_method in method_names() and check_methods([toy_method]) == [toy_method]
  assert "toyroll_shift" in [s.name for s in all_settings()]
  settings = MethodSettings(toyroll_shift=3)
  assert settings.toyroll_shift == 3 and MethodSettings().toyroll_shift == 1
  assert settings.for_method(toy_method) == {"seed": 0, "toyroll_shift": 3}
  with pytest.raises(LmcError, match="Unknown alignment setting 'toyroll_shfit'"):
    MethodSettings(toyroll_shfit=3)


def test_unregistered_methods_are_refused(toy_method):
  unregister(toy_method)
  with pytest.raises(LmcError, match="Unknown alignment method"):
    check_methods([toy_method])


def test_align_by_runs_a_registered_method(toy_method, small_zoo):
  _, config, params = small_zoo
  spec = mlp_permutation_spec(1, collection="params")
  data = load_dataset(config)
  res = align_by(toy_method, model_for(config), spec, params, 1, {2}, data.x_train,
                 data.y_train, data.x_test, data.y_test, MethodSettings(toyroll_shift=2))
  rolled = np.roll(np.arange(6), 2)
  assert [p["P_0"].tolist() for p in res.perms] == [rolled.tolist(), list(range(6)),
                                                    list(range(6))]
  assert res.info == {"rolled": [0]}
  # The returned zoo is model k permuted by perms[k], computed here by hand.
  want = stack([apply_permutation(spec, res.perms[k], take(params, k)) for k in range(3)])
  for a, b in zip(*(np.asarray(x) for x in (res.params["params"]["Dense_0"]["kernel"],
                                            want["params"]["Dense_0"]["kernel"]))):
    np.testing.assert_array_equal(a, b)


def test_a_method_returning_too_few_permutations_is_refused(small_zoo):
  _, config, params = small_zoo
  register("toyshort", "returns one permutation only")(lambda task: Alignment([{}], {}))
  try:
    data = load_dataset(config)
    with pytest.raises(LmcError, match="returned 1 permutations for 3 models"):
      align_by("toyshort", model_for(config), mlp_permutation_spec(1, collection="params"),
               params, 0, (),
               data.x_train, data.y_train, data.x_test, data.y_test)
  finally:
    unregister("toyshort")


def test_the_barrier_entry_point_runs_a_registered_method(toy_method, small_zoo, tmp_path):
  barrier = cli_module("barrier")  # with its own flags alone
  barrier.define_setting_flags()  # the toy's setting becomes a flag
  zoo, config, params = small_zoo
  argv = ["barrier", f"--zoo={zoo}", f"--figures={tmp_path}", "--align=toyroll",
          "--toyroll_shift=2", "--recompute"]
  try:
    flags.FLAGS(argv)
    barrier.main(argv[1:])
  finally:
    flags.FLAGS.unparse_flags()
  res = json.loads((zoo / BARRIER_JSON).read_text())
  entry = res["methods"]["toyroll"]
  assert entry["settings"] == {"seed": 0, "toyroll_shift": 2}
  # Independent oracle: roll models 1 and 2 by hand and sweep every pair.
  perm = roll_perm({"P_0": 6}, 2)
  spec = mlp_permutation_spec(1, collection="params")
  rolled = stack([take(params, 0)] + [apply_permutation(spec, perm, take(params, k))
                                      for k in (1, 2)])
  data = load_dataset(config)
  curves = pair_sweep(model_for(config), rolled, all_pairs(3), data.x_test, data.y_test)
  np.testing.assert_allclose(entry["loss"], curves.loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(entry["epsilon"], epsilon(curves.loss, curves.alphas), atol=1e-5)
  assert (tmp_path / "moons_alignment_methods.csv").read_text().count("toyroll") == 1
