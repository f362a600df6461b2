import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.align.spec import flatten
from lmc_jax.errors import LmcError
from lmc_jax.nn.models import loss_and_correct, make_mlp
from tests.helpers import random_params


def test_param_tree_names_and_shapes():
  model = make_mlp((5, 6, 7), 10, layernorm="after_relu")
  params = model.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
  shapes = {k: v.shape for k, v in flatten(params).items()}
  assert shapes == {
      "Dense_0/kernel": (4, 5), "Dense_0/bias": (5,),
      "LayerNorm_0/scale": (5,), "LayerNorm_0/bias": (5,),
      "Dense_1/kernel": (5, 6), "Dense_1/bias": (6,),
      "LayerNorm_1/scale": (6,), "LayerNorm_1/bias": (6,),
      "Dense_2/kernel": (6, 7), "Dense_2/bias": (7,),
      "LayerNorm_2/scale": (7,), "LayerNorm_2/bias": (7,),
      "Dense_3/kernel": (7, 10), "Dense_3/bias": (10,)}
  assert model.apply({"params": params}, jnp.ones((3, 4))).shape == (3, 10)


def _forward_numpy(params, x, layernorm):
  """Plain numpy MLP forward pass: an oracle independent of Flax."""
  f = {k: np.asarray(v, np.float64) for k, v in flatten(params).items()}
  n_hidden = sum(1 for k in f if k.endswith("kernel")) - 1

  def ln(h, i):
    mu = h.mean(-1, keepdims=True)
    var = h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-6) * f[f"LayerNorm_{i}/scale"] + f[f"LayerNorm_{i}/bias"]

  h = np.asarray(x, np.float64)
  for i in range(n_hidden):
    h = h @ f[f"Dense_{i}/kernel"] + f[f"Dense_{i}/bias"]
    if layernorm == "before_relu":
      h = ln(h, i)
    h = np.maximum(h, 0)
    if layernorm == "after_relu":
      h = ln(h, i)
  return h @ f[f"Dense_{n_hidden}/kernel"] + f[f"Dense_{n_hidden}/bias"]


@pytest.mark.parametrize("layernorm", ["none", "after_relu", "before_relu"])
def test_forward_matches_numpy(layernorm):
  model, params = random_params(jax.random.key(1), (6, 5), d_in=3, d_out=4, layernorm=layernorm)
  x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
  got = np.asarray(model.apply({"params": params}, x))
  np.testing.assert_allclose(got, _forward_numpy(params, x, layernorm), rtol=1e-4, atol=1e-4)


def test_init_schemes_have_their_scales():
  fan_in, width = 400, 300
  def kernel(init):
    model = make_mlp((width,), 1, init=init)
    p = model.init(jax.random.key(0), jnp.zeros((1, fan_in)))["params"]
    return np.asarray(p["Dense_0"]["kernel"]), np.asarray(p["Dense_0"]["bias"])
  k, b = kernel("pytorch")
  bound = 1 / np.sqrt(fan_in)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
  assert np.abs(b).max() <= bound and np.std(b) > 0.4 * bound  # torch's bias is not zero
  for init in ("kaiming_normal", "kaiming_uniform"):
    k, b = kernel(init)
    assert np.std(k) == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)
    assert not b.any()
  k, b = kernel("default")
  assert np.std(k) == pytest.approx(np.sqrt(1 / fan_in), rel=0.05)


def test_binary_and_softmax_losses_against_formulas():
  z = jnp.array([[-30.0], [-1.0], [0.0], [2.0], [40.0]])
  y = jnp.array([1, 0, 1, 1, 0])
  loss, correct = loss_and_correct(z, y)
  p = 1 / (1 + np.exp(-np.asarray(z[:, 0], np.float64)))
  yn = np.asarray(y)
  with np.errstate(divide="ignore"):
    expect = -(yn * np.log(p) + (1 - yn) * np.log1p(-p))
  expect[0], expect[4] = 30.0, 40.0  # exact limits where float64 p rounds to 0 or 1
  np.testing.assert_allclose(loss, expect, rtol=1e-5)
  np.testing.assert_array_equal(correct, [0, 1, 0, 1, 0])

  logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
  labels = jnp.array([0, 2])
  loss, correct = loss_and_correct(logits, labels)
  logits64 = np.asarray(logits, np.float64)
  expect = np.log(np.exp(logits64).sum(1)) - logits64[[0, 1], [0, 2]]
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  np.testing.assert_array_equal(correct, [0, 1])


@pytest.mark.parametrize("kwargs, words", [
    (dict(hidden=(0,), d_out=1), "below 1"),
    (dict(hidden=(), d_out=1), "at least one hidden layer"),
    (dict(hidden=(4,), d_out=1, layernorm="middle"), "layernorm"),
    (dict(hidden=(4,), d_out=1, init="xavier"), "init"),
])
def test_bad_model_arguments(kwargs, words):
  with pytest.raises(LmcError, match=words):
    make_mlp(**kwargs)
