"""--precision=bf16: bfloat16 matmul inputs, float32 everything else, checked against
float32 arithmetic on rounded operands, the jaxpr of a training step, and a float32 zoo."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn import random_draws
from lmc_jax.nn.architectures import model_at, model_for
from lmc_jax.nn.models import init_variables
from lmc_jax.nn.optim import optimizer_for
from lmc_jax.nn.precision import bf16_dense, einsum
from lmc_jax.zoo.training import make_train_step, train_zoo
from tests.helpers.cli import refused, run_cli
from tests.helpers.jaxprs import matrix_products


def rounded(x):
  return np.asarray(x, np.float32).astype(jnp.bfloat16).astype(np.float64)  # by ml_dtypes


def test_bf16_dense_and_its_gradients_are_float32_sums_of_rounded_operands():
  x = random_draws.normal(jax.random.key(0), (3, 5, 40))
  k = random_draws.normal(jax.random.key(1), (40, 7))
  g = random_draws.normal(jax.random.key(2), (3, 5, 7))
  out, vjp = jax.vjp(bf16_dense, x, k)
  dx, dk = vjp(g)
  assert out.dtype == dx.dtype == dk.dtype == jnp.float32
  xr, kr, gr = rounded(x), rounded(k), rounded(g)
  np.testing.assert_allclose(out, xr @ kr, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, gr @ kr.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, np.einsum("abd,abw->dw", xr, gr), rtol=1e-5, atol=1e-5)
  assert not np.allclose(out, np.asarray(x, np.float64) @ np.asarray(k, np.float64), atol=1e-4)
  np.testing.assert_allclose(einsum("bf16", "bd,pdw->pbw", x[0], k[None]), (xr[0] @ kr)[None],
                             rtol=1e-5, atol=1e-5)


def test_a_bf16_training_step_multiplies_in_bf16_and_keeps_everything_else_float32():
  config = default_config("mnist", hidden=(16, 16, 16), precision="bf16")
  model = model_for(config)
  params = init_variables(model, jax.random.key(0), 784)
  tx = optimizer_for(config.optim, 10)
  opt_state = tx.init(params["params"])
  x, y, w = np.ones((8, 784), np.float32), np.arange(8, dtype=np.int32) % 10, np.ones(8, np.float32)
  step = make_train_step(model, tx)
  dots = matrix_products(step, params, opt_state, x, y, w)
  assert len(dots) >= 4 * 3  # per layer: the forward product and two backward
  for eqn in dots:
    assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2, eqn
    assert eqn.outvars[0].aval.dtype == jnp.float32, eqn
  new_params, new_state, loss = jax.jit(step)(params, opt_state, x, y, w)  # dtypes as traced
  dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves((new_params, new_state, loss))
            if jnp.issubdtype(leaf.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}


def test_a_bf16_zoo_tracks_the_float32_zoo_with_the_same_seeds():
  config = default_config("moons", hidden=(64,), num_models=4, epochs=40)
  data = load_dataset(config)
  fp32 = train_zoo(config, data, log=None)
  bf16 = train_zoo(config.replace(precision="bf16"), data, log=None)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(bf16.params))
  acc = lambda zoo: np.array([m["test_acc"] for m in zoo.metrics])
  loss = lambda zoo: np.array([m["test_loss"] for m in zoo.metrics])
  # Measured (2026-12-01): accuracies equal, test losses within 2.2 % per model.
  np.testing.assert_allclose(acc(bf16), acc(fp32), atol=0.02)
  np.testing.assert_allclose(loss(bf16), loss(fp32), rtol=0.15)
  assert not np.array_equal(loss(bf16), loss(fp32))  # it really computed in bf16

  pairs = all_pairs(4)
  alphas = np.linspace(0, 1, 5)
  s32 = pair_sweep(model_for(config), fp32.params, pairs, data.x_test, data.y_test, alphas)
  s16 = pair_sweep(model_at(config, "bf16"), fp32.params, pairs, data.x_test, data.y_test,
                   alphas)
  np.testing.assert_allclose(s16.loss, s32.loss, rtol=0.02, atol=2e-3)


def test_bf16_is_refused_where_it_is_not_built(tmp_path):
  with pytest.raises(LmcError, match="model.precision is bf16, which vgg_small does not run"):
    model_for(default_config("mnist", arch="vgg_small", hidden=(1,), precision="bf16"))
  with pytest.raises(LmcError, match="model.precision must be one of fp32, bf16, got 'fp16'"):
    default_config("moons", precision="fp16")
  refused(run_cli("zoo", f"--out={tmp_path}", "--precision=fp8"), "--precision", "bf16")
  assert not list(tmp_path.iterdir())


def test_the_zoo_records_its_precision(tmp_path):
  r = run_cli("zoo", f"--out={tmp_path}", "--width=4", "--num_models=2", "--epochs=2",
              "--precision=bf16")
  assert r.returncode == 0, r.stderr[-2000:]
  doc = json.loads((tmp_path / "moons_w4" / "zoo.json").read_text())
  assert doc["config"]["model"]["precision"] == "bf16"
  r = run_cli("barrier", f"--zoo={tmp_path / 'moons_w4'}", "--precision=bf16")
  assert r.returncode == 0, r.stderr[-2000:]
  assert json.loads((tmp_path / "moons_w4" / "barrier.json").read_text())["precision"] == "bf16"
