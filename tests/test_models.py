import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import abstract_variables, init_variables, loss_and_correct, make_mlp
from lmc_jax.symmetry.spec import flatten
from tests.helpers import random_params


def test_param_tree_names_and_shapes():
  model = make_mlp((5, 6, 7), 10, layernorm="after_relu")
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4)))["params"]
  shapes = {k: v.shape for k, v in flatten(params).items()}
  assert shapes == {
      "Dense_0/kernel": (4, 5), "Dense_0/bias": (5,),
      "LayerNorm_0/scale": (5,), "LayerNorm_0/bias": (5,),
      "Dense_1/kernel": (5, 6), "Dense_1/bias": (6,),
      "LayerNorm_1/scale": (6,), "LayerNorm_1/bias": (6,),
      "Dense_2/kernel": (6, 7), "Dense_2/bias": (7,),
      "LayerNorm_2/scale": (7,), "LayerNorm_2/bias": (7,),
      "Dense_3/kernel": (7, 10), "Dense_3/bias": (10,)}
  assert jax.jit(model.apply)({"params": params}, jnp.ones((3, 4))).shape == (3, 10)


def _forward_numpy(params, x, layernorm, eps=1e-6):
  """Plain numpy MLP forward pass: an oracle independent of Flax (torch's LayerNorm rule,
  (h - mean) / sqrt(biased var + eps) * scale + bias)."""
  f = {k: np.asarray(v, np.float64) for k, v in flatten(params).items()}
  n_hidden = sum(1 for k in f if k.endswith("kernel")) - 1

  def ln(h, i):
    mu = h.mean(-1, keepdims=True)
    var = h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * f[f"LayerNorm_{i}/scale"] + f[f"LayerNorm_{i}/bias"]

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
  got = np.asarray(jax.jit(model.apply)({"params": params}, x))
  np.testing.assert_allclose(got, _forward_numpy(params, x, layernorm), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layernorm", ["after_relu", "before_relu"])
def test_layernorm_eps_reaches_every_layernorm(layernorm):
  _, params = random_params(jax.random.key(1), (6, 5), d_in=3, d_out=4, layernorm=layernorm)
  # Small hidden layers: every LayerNorm's input variance is comparable to eps.
  params = dict(params)
  for i in range(2):
    params[f"Dense_{i}"] = {k: v * 0.01 for k, v in params[f"Dense_{i}"].items()}
  x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
  outs = {}
  for eps in (1e-6, 1e-5, 1e-3):
    model = make_mlp((6, 5), 4, layernorm=layernorm, layernorm_eps=eps)
    outs[eps] = np.asarray(jax.jit(model.apply)({"params": params}, x))
    np.testing.assert_allclose(outs[eps], _forward_numpy(params, x, layernorm, eps), rtol=1e-4,
                               atol=1e-4)
  assert np.abs(outs[1e-5] - outs[1e-6]).max() > 1e-2  # eps changes the output

  config = default_config("mnist", hidden=(4, 4, 4), layernorm=layernorm, layernorm_eps=1e-5)
  model = model_for(config)
  assert model.layernorm_eps == 1e-5
  assert make_mlp((4,), 1).layernorm_eps == 1e-6  # Flax's default, as before


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


def _dense0(init, fan_in, width, seed=0):
  model = make_mlp((width,), 1, init=init)
  p = model.init(jax.random.key(seed), jnp.zeros((1, fan_in)))["params"]
  return np.asarray(p["Dense_0"]["kernel"], np.float64), np.asarray(p["Dense_0"]["bias"])


def test_kaiming_with_torch_bias_follows_the_studys_section_5_2_code():
  """torch.nn.init.kaiming_normal_/kaiming_uniform_(weight) with their defaults (a=0,
  fan_in, leaky_relu: gain sqrt(2)) and torch.nn.Linear's bias U(+-1/sqrt(fan_in))."""
  fan_in, width = 400, 1000
  std, bound, bias_bound = np.sqrt(2 / fan_in), np.sqrt(6 / fan_in), 1 / np.sqrt(fan_in)
  k, b = _dense0("kaiming_normal_torch_bias", fan_in, width)
  assert k.shape == (fan_in, width) and abs(k.mean()) < 0.01 * std
  assert np.std(k) == pytest.approx(std, rel=0.02)
  # A plain normal, as torch draws it (Flax's he_normal truncates at 2 std): P(|z| > 3) =
  # 0.27%, 1080 of these 400k draws.
  assert 0.002 < np.mean(np.abs(k) > 3 * std) < 0.0035
  k, b2 = _dense0("kaiming_uniform_torch_bias", fan_in, width)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.999 * bound
  assert np.std(k) == pytest.approx(bound / np.sqrt(3), rel=0.02)  # = sqrt(2 / fan_in)
  for bias in (b, b2):
    assert bias.shape == (width,) and np.abs(bias).max() <= bias_bound
    assert np.abs(bias).max() > 0.99 * bias_bound
    assert np.std(bias) == pytest.approx(bias_bound / np.sqrt(3), rel=0.1)
  # Deeper layers use their own fan-in; the readout too.
  model = make_mlp((30, 20), 10, init="kaiming_normal_torch_bias")
  p = model.init(jax.random.key(1), jnp.zeros((1, 5)))["params"]
  assert np.abs(np.asarray(p["Dense_2"]["bias"])).max() <= 1 / np.sqrt(20)
  assert np.asarray(p["Dense_2"]["bias"]).any()


def test_binary_and_softmax_losses_against_formulas():
  losses = jax.jit(loss_and_correct)
  z = np.array([[-30.0], [-1.0], [0.0], [2.0], [40.0]], np.float32)
  y = np.array([1, 0, 1, 1, 0], np.int32)
  loss, correct = losses(z, y)
  p = 1 / (1 + np.exp(-z[:, 0].astype(np.float64)))
  with np.errstate(divide="ignore"):
    expect = -(y * np.log(p) + (1 - y) * np.log1p(-p))
  expect[0], expect[4] = 30.0, 40.0  # exact limits where float64 p rounds to 0 or 1
  np.testing.assert_allclose(loss, expect, rtol=1e-5)
  np.testing.assert_array_equal(correct, [0, 1, 0, 1, 0])

  logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]], np.float32)
  labels = np.array([0, 2], np.int32)
  loss, correct = losses(logits, labels)
  logits64 = logits.astype(np.float64)
  expect = np.log(np.exp(logits64).sum(1)) - logits64[[0, 1], [0, 2]]
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  np.testing.assert_array_equal(correct, [0, 1])


@pytest.mark.parametrize("kwargs, words", [
    (dict(hidden=(0,), d_out=1), "below 1"),
    (dict(hidden=(), d_out=1), "at least one hidden layer"),
    (dict(hidden=(4,), d_out=1, layernorm="middle"), "layernorm"),
    (dict(hidden=(4,), d_out=1, init="xavier"), "init"),
    (dict(hidden=(4,), d_out=1, layernorm_eps=0.0), "layernorm_eps"),
    (dict(hidden=(4,), d_out=1, layernorm_eps=float("nan")), "layernorm_eps"),
])
def test_bad_model_arguments(kwargs, words):
  with pytest.raises(LmcError, match=words):
    make_mlp(**kwargs)


class _StatsFromInput(nn.Module):
  """A variable initialised from the input's values, which tracing alone can not give."""

  @nn.compact
  def __call__(self, x):
    offset = self.variable("batch_stats", "offset", lambda: jnp.mean(x, axis=0) + 1.0)
    return nn.Dense(3)(x - offset.value)


class _BranchOnInput(nn.Module):
  """A Python branch on the input's values, which tracing alone can not take."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x) if float(x.sum()) == 0.0 else nn.Dense(4)(x)


@pytest.mark.parametrize("net", ["mlp", "resnet20", "vit", "decoder", "input_dependent",
                                 "branch_on_input"])
def test_init_variables_are_the_modules_own_init_on_zeros(net):
  """`init_variables` only traces the forward pass; what it gives is, bit for bit, what
  `Module.init` gives by running the module on zeros, also under vmap over keys."""
  from lmc_jax.nn.conv import make_conv_net
  from lmc_jax.nn.transformer import make_decoder, make_vit
  model, d_in = {
      "mlp": lambda: (make_mlp((6, 5), 3, "before_relu"), 4),
      "resnet20": lambda: (make_conv_net("resnet20", 1, 10, (8, 8, 3), "batchnorm"), 192),
      "vit": lambda: (make_vit(1, 2, 4, 7, "mean", 10, (14, 14, 1)), 196),
      "decoder": lambda: (make_decoder(1, 1, 4, 8, 7), 5),
      "input_dependent": lambda: (_StatsFromInput(), 4),
      "branch_on_input": lambda: (_BranchOnInput(), 4)}[net]()
  keys = jax.random.split(jax.random.key(7), 2)
  if net == "branch_on_input":  # a branch on values can not run under vmap either
    ours = init_variables(model, keys[0], d_in)
    theirs = model.init(keys[0], jnp.zeros((1, d_in), jnp.float32))
  else:
    ours = jax.vmap(lambda k: init_variables(model, k, d_in))(keys)
    theirs = jax.vmap(lambda k: model.init(k, jnp.zeros((1, d_in), jnp.float32)))(keys)
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(dict(theirs))
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


class _Tally:
  """A count kept outside a module (Flax freezes lists and dicts given as fields)."""
  def __init__(self):
    self.n = 0


class _UnhashableTally(_Tally):
  __hash__ = None


class _CountsTraces(nn.Module):
  """Counts how often its forward pass is traced (a Python side effect at trace time)."""
  widths: tuple
  tally: _Tally

  @nn.compact
  def __call__(self, x):
    self.tally.n += 1
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return x


def test_abstract_variables_are_traced_once_per_model_and_given_in_fresh_dicts():
  model = _CountsTraces((3, 5), _Tally())
  first = abstract_variables(model, 4)
  assert model.tally.n == 1
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), 4))
  assert jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), first) == \
      jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), shapes)
  first["params"].pop("Dense_0")  # a caller's edit stays with that caller
  again = abstract_variables(model, 4)
  assert model.tally.n == 2 and set(again["params"]) == {"Dense_0", "Dense_1"}  # 2: eval_shape
  abstract_variables(model, 6)  # another input width: traced again
  assert model.tally.n == 3
  unhashable = _CountsTraces((3,), _UnhashableTally())  # traced every time
  with pytest.raises(TypeError):
    hash(unhashable)
  for _ in range(2):
    assert abstract_variables(unhashable, 4)["params"]["Dense_0"]["kernel"].shape == (4, 3)
  assert unhashable.tally.n == 2
