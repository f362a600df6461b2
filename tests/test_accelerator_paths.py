"""The paths that run only on a GPU or TPU, forced on this CPU (LMC_JAX_ACCELERATOR_PATHS=1):
every model of a zoo in one vmap, conv nets inside jit rather than host loops, chunks sized
from the device's memory, the device matcher as `auto`. Each is checked against the CPU's
own path on the same inputs, and scripts/gpu_bench.sh runs end to end at a tiny size."""
import json
import os
import subprocess

import jax
import numpy as np
import pytest

from lmc_jax import execution
from lmc_jax.align.weight import _check_matcher
from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset, subset
from lmc_jax.execution import plan_from_environment
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import init_variables
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.zoo.training import models_per_chunk, train_zoo, zoo_epoch_fn
from tests.helpers.cli import ROOT

FORCED = {execution.ACCELERATOR_PATHS_ENV: "1", execution.ACCELERATOR_MEMORY_ENV: str(1 << 30)}
CPU = plan_from_environment(environ={})


@pytest.fixture
def forced():
  yield plan_from_environment(environ=FORCED)
  zoo_epoch_fn.cache_clear()


def test_the_switch_takes_every_accelerator_path():
  config = default_config("mnist", arch="vgg_small", hidden=(1,))
  model = model_for(config)
  conv = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), 784))
  wide = jax.eval_shape(lambda: init_variables(model_for(default_config("moons", hidden=(512,))),
                                               jax.random.key(0), 2))
  cpu = (models_per_chunk(wide, 256, 50, CPU), CPU.host_loops(conv), CPU.sweep_elements(),
         _check_matcher("auto", CPU))
  assert cpu == (7, True, 2 ** 20, "host")  # 7 Moons nets of width 512 fill the cache
  acc = plan_from_environment(environ=FORCED)
  assert (models_per_chunk(wide, 256, 50, acc), acc.host_loops(conv), acc.sweep_elements(),
          _check_matcher("auto", acc)) == (50, False, (1 << 30) // 16, "device")
  assert _check_matcher("host", acc) == "host"  # an explicit choice stays
  assert plan_from_environment(environ={execution.ACCELERATOR_PATHS_ENV: "1"}).memory_bytes \
      == execution.DEFAULT_FORCED_MEMORY


def test_the_environment_is_read_in_one_place():
  """Nothing in the package but `execution` names the switches."""
  from tests.test_layout import PACKAGE
  names = (execution.ACCELERATOR_PATHS_ENV, execution.ACCELERATOR_MEMORY_ENV)
  readers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if any(n in p.read_text() for n in names))
  assert readers == ["execution.py"]


def _train(config, data, plan):
  zoo = train_zoo(config, data, log=None, plan=plan)
  return jax.tree_util.tree_map(np.asarray, zoo.params), zoo.history["train_loss"]


def test_one_vmap_over_all_models_trains_the_zoo_the_chunked_path_trains(forced):
  config = default_config("moons", hidden=(512,), num_models=9, epochs=2)
  data = load_dataset(config)
  acc_params, acc_loss = _train(config, data, forced)
  cpu_params, cpu_loss = _train(config, data, CPU)  # chunks of 7 models (lax.map) on the CPU
  np.testing.assert_allclose(acc_loss, cpu_loss, rtol=1e-5)
  for a, c in zip(jax.tree_util.tree_leaves(acc_params), jax.tree_util.tree_leaves(cpu_params)):
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not (ROOT / "data" / "mnist").is_dir(), reason="needs experiments.fetch "
                    "--dataset=mnist")
def test_conv_nets_inside_jit_match_their_host_loops(forced):
  config = default_config("mnist", arch="vgg_small", hidden=(1,), num_models=2, epochs=1,
                          batch_size=32, train_subset=64, test_subset=32, norm="batchnorm")
  data = subset(load_dataset(config, ROOT / "data"), 64, 32)
  acc_params, acc_loss = _train(config, data, forced)
  pairs = all_pairs(2)
  alphas = np.linspace(0, 1, 3)
  model = model_for(config)
  acc_sweep = pair_sweep(model, acc_params, pairs, data.x_test, data.y_test, alphas, plan=forced)
  cpu_params, cpu_loss = _train(config, data, CPU)
  cpu_sweep = pair_sweep(model, cpu_params, pairs, data.x_test, data.y_test, alphas, plan=CPU)
  np.testing.assert_allclose(acc_loss, cpu_loss, rtol=1e-4)
  # AdamW's first steps move a weight by about the learning rate whatever its gradient's
  # size, so float32 rounding of a near-zero gradient shows at a small fraction of it.
  for a, c in zip(jax.tree_util.tree_leaves(acc_params), jax.tree_util.tree_leaves(cpu_params)):
    np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(acc_sweep.loss, cpu_sweep.loss, rtol=1e-4)


def test_auto_matching_on_the_forced_path_is_the_device_solver(forced):
  from lmc_jax.align.registry import MethodSettings, align_by
  config = default_config("moons", hidden=(8,), num_models=3, epochs=3)
  data = load_dataset(config)
  params, _ = _train(config, data, forced)
  model, spec = model_for(config), spec_for_config(config)
  res = align_by("weight", model, spec, params, 0, frozenset(), data.x_train, data.y_train,
                 data.x_test, data.y_test, MethodSettings(), plan=forced)
  assert res.info["matcher"] == "device"
  for perm in res.perms:  # each a permutation, and the reference's the identity
    assert all(sorted(v.tolist()) == list(range(8)) for v in perm.values())
  assert all((v == np.arange(8)).all() for v in res.perms[0].values())


def test_gpu_bench_script_runs_at_a_tiny_size(tmp_path):
  # The conv rows are left out here (a conv zoo's bench compiles for about half a minute on a
  # CPU); `bench --arch` is the same entry point, and the library's conv bench is in
  # tests/test_bench_conv.py.
  env = dict(os.environ, OUT=str(tmp_path), PARTS="mlp,moons", WIDTH="8", NUM_MODELS="3",
             EPOCHS="1", BASELINE_MODELS="1", BASELINE_PAIRS="2", TRAIN_SUBSET="256",
             MOONS_ARGS="--width=4 --num_models=3 --epochs=2 --baseline_models=1 "
                        "--baseline_pairs=2",
             PYTHONPATH=str(ROOT), **{execution.ACCELERATOR_PATHS_ENV: "1"})
  if not (ROOT / "data" / "mnist").is_dir():
    pytest.skip("needs experiments.fetch --dataset=mnist")
  r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_bench.sh")], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  for name, width in (("bench_mnist_w8.json", "w8"), ("bench_moons.json", "w4")):
    doc = json.loads((tmp_path / name).read_text())
    assert doc["results"][width]["training"]["models_per_chunk"] == 3  # all at once
    assert {"plane", "alignment"} <= set(doc["results"]) and len(doc["table"]) >= 7
  bf16 = json.loads((tmp_path / "bench_mnist_w8.json").read_text())["results"]["w8_bf16"]
  assert bf16["training"]["zoo_s"] > 0 and bf16["sweep"]["max_abs_diff"] < 1e-2
