"""One zoo handle: `open_zoo` reads, checks and builds a zoo once, and every analysis and the
barrier command take the handle instead of opening the directory again."""
import jax
import numpy as np
import pytest
from absl import flags

from lmc_jax import records
from lmc_jax.align.registry import AlignTask, MethodSettings, align_by
from lmc_jax.analysis.barrier import analyse_zoo, prepare_job
from lmc_jax.errors import LmcError
from lmc_jax.nn import architectures
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.symmetry.spec import apply_permutation, mlp_permutation_spec
from lmc_jax.tree_utils import take
from lmc_jax.zoo import io
from lmc_jax.zoo.handle import ZooHandle, open_zoo
from tests.helpers import saved_moons_zoo
from tests.helpers.cli import cli_module


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("handle") / "moons_w5"
  saved_moons_zoo(d, 5, num_models=3, epochs=2)
  return d


def test_a_handle_holds_the_zoo_as_written(zoo_dir):
  zoo = open_zoo(zoo_dir)
  config, variables, record = io.load_zoo(zoo_dir)
  assert isinstance(zoo, ZooHandle) and open_zoo(zoo) is zoo
  assert zoo.config == config and zoo.record == record and zoo.num_models == 3
  for a, b in zip(jax.tree_util.tree_leaves(zoo.variables), jax.tree_util.tree_leaves(variables)):
    np.testing.assert_array_equal(a, b)
  assert zoo.model == architectures.model_for(config) and zoo.usable == (0, 1, 2)
  # The derived spec is the hand-written one of the study's MLP, over the variables dict.
  assert zoo.spec.axes_to_perm == mlp_permutation_spec(1, collection="params").axes_to_perm
  assert zoo.spec.axes_to_perm == spec_for_config(config).axes_to_perm
  bf16 = zoo.at_precision("bf16")
  assert bf16.model.precision == "bf16" and bf16.variables is zoo.variables
  assert zoo.at_precision("fp32") is zoo
  np.testing.assert_array_equal(zoo.dataset().x_test, bf16.dataset().x_test)


def test_the_barrier_command_reads_each_zoo_json_once_and_builds_each_network_once(
    zoo_dir, tmp_path, monkeypatch):
  barrier = cli_module("barrier")  # with its own flags alone
  parsed, built = [], []
  read = records.ZooRecord.read.__func__

  def counted_read(cls, c, doc):
    parsed.append(c.path)
    return read(cls, c, doc)
  monkeypatch.setattr(records.ZooRecord, "read", classmethod(counted_read))
  build = architectures.build_network

  def counted_build(model, data):
    built.append(model.arch)
    return build(model, data)
  monkeypatch.setattr(io, "build_network", counted_build)
  argv = ["barrier", f"--zoo={zoo_dir}", f"--figures={tmp_path}", "--align=weight,activation",
          "--repair", "--recompute"]
  try:
    flags.FLAGS(argv)
    barrier.main(argv[1:])
  finally:
    flags.FLAGS.unparse_flags()
  assert len(parsed) == 1 and len(built) == 1, (parsed, built)


def test_one_task_is_handed_to_every_method(zoo_dir):
  job = prepare_job(open_zoo(zoo_dir), reference=1, settings=MethodSettings(fit_samples=100))
  task = job.task
  assert isinstance(task, AlignTask) and task.reference == 1 and task.skip == frozenset()
  assert len(task.fit_x) == 100 and task.eval_x.shape == (512, 2)  # Moons' test split
  res = align_by("weight", task)
  # The same as the arguments of earlier versions, spelled out.
  old = align_by("weight", task.model, task.spec, task.params, 1, (), task.fit_x, task.fit_y,
                 task.eval_x, task.eval_y, task.settings)
  assert all(np.array_equal(p[q], o[q]) for p, o in zip(res.perms, old.perms) for q in p)
  for k in range(3):  # each model moved by its own permutation, the reference not at all
    want = apply_permutation(task.spec, res.perms[k], take(task.params, k))
    for a, b in zip(jax.tree_util.tree_leaves(take(res.params, k)),
                    jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b)
  assert all((v == np.arange(len(v))).all() for v in res.perms[1].values())


def test_analyses_take_a_handle_or_a_directory_alike(zoo_dir):
  a = analyse_zoo(open_zoo(zoo_dir), recompute=True)
  b = analyse_zoo(zoo_dir)  # kept from the first: the same record
  assert a == b and a.curves("aligned") is not None


def test_a_zoo_whose_network_does_not_fit_is_refused_naming_the_field(zoo_dir, tmp_path):
  import json
  import shutil
  d = tmp_path / "z"
  shutil.copytree(zoo_dir, d)
  doc = json.loads((d / "zoo.json").read_text())
  doc["config"]["model"]["arch"] = "resnet20"  # a conv net on Moons, which has no images
  (d / "zoo.json").write_text(json.dumps(doc))
  with pytest.raises(LmcError, match=r"zoo.json: config.model.arch is resnet20, a "
                                     "convolutional net, and moons has no images"):
    open_zoo(d)
