"""Sign symmetries: which groups `derive_spec` lets flip (against sets written here by hand),
signed permutations applied, inverted and composed, and weight and activation matching
recovering planted signed permutations (against brute force on a tiny net)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import check_spec, derive_spec, spec_without_prefix
from lmc_jax.align.activation import activation_matching
from lmc_jax.align.weight import matching_objective, weight_matching
from lmc_jax.align.weight_device import match_many
from lmc_jax.nn import random_draws
from lmc_jax.nn.models import make_mlp
from lmc_jax.symmetry.spec import (
  apply_permutation,
  compose_permutations,
  invert_permutation,
  perm_sizes,
  random_signed_permutation,
  without_signs,
)
from lmc_jax.tree_utils import flatten


def x_of(shape, seed=1):
  return random_draws.normal(jax.random.key(seed), shape)


def random_net(hidden, activation="tanh", layernorm="none", seed=0, d_in=4, d_out=3):
  """An MLP with every leaf random (LayerNorm's scale and bias too); its init is read for
  the shapes only (nothing compiled)."""
  model = make_mlp(hidden, d_out, layernorm, activation=activation)
  params = jax.eval_shape(model.init, jax.random.key(seed),
                          jax.ShapeDtypeStruct((1, d_in), jnp.float32))["params"]
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  return model, jax.tree_util.tree_unflatten(
      tree, [random_draws.normal(k, v.shape) for k, v in zip(keys, leaves)])


def hand_signs(n_hidden, layernorm):
  """The flips worked out by hand: with no LayerNorm a tanh unit's incoming weights, bias
  and outgoing weights; with one (either side of tanh: its mean forbids flipping what it
  reads) LayerNorm's scale and bias and the outgoing weights."""
  out = {}
  for i in range(n_hidden):
    nxt = (f"Dense_{i + 1}/kernel", 0)
    if layernorm == "none":
      out[f"P_{i}"] = {(f"Dense_{i}/kernel", 1), (f"Dense_{i}/bias", 0), nxt}
    else:
      out[f"P_{i}"] = {(f"LayerNorm_{i}/scale", 0), (f"LayerNorm_{i}/bias", 0), nxt}
  return out


@pytest.mark.parametrize("activation, layernorm", [
    ("tanh", "none"), ("tanh", "before_relu"), ("tanh", "after_relu"),
    ("relu", "none"), ("gelu", "none"), ("relu", "before_relu"), ("relu", "after_relu")])
def test_derived_signs_equal_the_hand_written_ones(activation, layernorm):
  model, params = random_net((5, 6), activation, layernorm)
  x = x_of((7, 4))
  spec = spec_without_prefix(derive_spec(model, {"params": params}, x))
  got = {p: set(v) for p, v in spec.signs.items()}
  if activation == "tanh" or layernorm == "after_relu":  # LayerNorm's affine map feeds a Dense
    assert got == hand_signs(2, layernorm)
  else:  # relu, gelu: neither is odd
    assert got == {}
  assert check_spec(model, {"params": params}, derive_spec(model, {"params": params}, x),
                    x, trials=4) < 1e-5


def test_a_sign_flip_the_spec_does_not_allow_changes_the_outputs():
  model, params = random_net((5,), "relu")
  x = x_of((9, 4))
  spec = spec_without_prefix(derive_spec(model, {"params": params}, x))
  flipped = spec._replace(signs={"P_0": (("Dense_0/bias", 0), ("Dense_0/kernel", 1),
                                         ("Dense_1/kernel", 0))})
  perm = {"P_0": np.array([~0, 1, 2, 3, 4])}
  out = np.asarray(model.apply({"params": apply_permutation(flipped, perm, params)}, x))
  assert np.max(np.abs(out - np.asarray(model.apply({"params": params}, x)))) > 1e-3


def tanh_spec(model, params, d_in=4):
  return spec_without_prefix(derive_spec(model, {"params": params},
                                         np.zeros((2, d_in), np.float32)))


def test_signed_permutations_invert_and_compose():
  model, params = random_net((6, 5))
  spec = tanh_spec(model, params)
  sizes = perm_sizes(spec, params)
  p = random_signed_permutation(jax.random.key(1), spec, sizes)
  q = random_signed_permutation(jax.random.key(2), spec, sizes)
  assert any((v < 0).any() for v in p.values())
  back = apply_permutation(spec, invert_permutation(p), apply_permutation(spec, p, params))
  both = apply_permutation(spec, compose_permutations(p, q), params)
  twice = apply_permutation(spec, p, apply_permutation(spec, q, params))
  for k, v in flatten(params).items():
    np.testing.assert_allclose(flatten(back)[k], v, rtol=0, atol=0)
    np.testing.assert_allclose(flatten(both)[k], flatten(twice)[k], rtol=0, atol=0)


@pytest.mark.parametrize("layernorm", ["none", "before_relu"])
def test_planted_signed_permutations_are_recovered_exactly(layernorm):
  # Wide inputs and outputs, so that coordinate descent is not caught in a local optimum
  # (narrow random nets catch it, signed or plain).
  model, a = random_net((8, 7, 6), "tanh", layernorm, d_in=32, d_out=16)
  spec = tanh_spec(model, a, d_in=32)
  planted = random_signed_permutation(jax.random.key(3), spec, perm_sizes(spec, a))
  b = apply_permutation(spec, planted, a)
  x = x_of((64, 32))
  apply = jax.jit(model.apply)  # one program, not one per op
  np.testing.assert_allclose(apply({"params": b}, x), apply({"params": a}, x), atol=1e-5)
  inverse = invert_permutation(planted)
  by_weights = weight_matching(jax.random.key(4), spec, a, b).perm
  whole = derive_spec(model, {"params": a}, x[:2])  # over the variables dict, as zoos hold
  by_activations = activation_matching(model, whole, {"params": a}, {"params": b}, x)
  for p in planted:
    np.testing.assert_array_equal(by_weights[p], inverse[p])
    np.testing.assert_array_equal(by_activations[p], inverse[p])
  if layernorm == "none":  # the jitted matcher (one compilation is enough)
    stack = lambda t: jax.tree_util.tree_map(lambda v: jax.device_put(np.stack([v, v])), t)
    device, _ = match_many(spec, perm_sizes(spec, a), jax.random.split(jax.random.key(5), 2),
                           stack(a), stack(b))
    for p in planted:
      np.testing.assert_array_equal(np.asarray(device[p])[1], inverse[p])
  aligned = apply_permutation(spec, by_weights, b)
  for k, v in flatten(a).items():
    np.testing.assert_allclose(flatten(aligned)[k], v, atol=1e-6)
  # Plain permutations can not undo the flips.
  plain = weight_matching(jax.random.key(4), without_signs(spec), a, b).perm
  assert all((v >= 0).all() for v in plain.values())
  assert matching_objective(spec, plain, a, b) < matching_objective(spec, by_weights, a, b)


def all_signed_permutations(n):
  for order in itertools.permutations(range(n)):
    for signs in itertools.product((1, -1), repeat=n):
      yield np.array([j if s > 0 else ~j for j, s in zip(order, signs)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_hidden_layer_equals_brute_force_over_signed_permutations(seed):
  model, a = random_net((3,), seed=seed)
  _, b = random_net((3,), seed=seed + 10)
  spec = tanh_spec(model, a)
  best = max(matching_objective(spec, {"P_0": p}, a, b) for p in all_signed_permutations(3))
  res = weight_matching(jax.random.key(0), spec, a, b)
  np.testing.assert_allclose(matching_objective(spec, res.perm, a, b), best, rtol=1e-9)


def test_relu_nets_get_plain_permutations():
  model, a = random_net((6,), "relu")
  _, b = random_net((6,), "relu", seed=7)
  spec = tanh_spec(model, a)
  assert spec.signs == {}
  assert (weight_matching(jax.random.key(0), spec, a, b).perm["P_0"] >= 0).all()


def test_activation_is_a_model_field_that_keeps_relu_zoos_as_they_were():
  from lmc_jax.config import ConfigError, ZooConfig, default_config
  from lmc_jax.data.datasets import dataset_info
  from lmc_jax.nn.architectures import build_network
  from lmc_jax.zoo.runs import zoo_dirname
  relu = default_config("moons", hidden=(8,))
  old = relu.to_dict()
  del old["model"]["activation"]  # a zoo.json written before the field
  assert ZooConfig.from_dict(old) == relu and relu.model.activation == "relu"
  assert zoo_dirname(relu) == "moons_w8"
  tanh = relu.replace(activation="tanh")
  assert zoo_dirname(tanh) == "moons_tanh_w8"
  assert build_network(tanh.model, dataset_info(tanh.data)).activation == "tanh"
  with pytest.raises(ConfigError, match="model.activation must be one of relu, tanh, gelu"):
    relu.replace(activation="sigmoid").validate()
  conv = default_config("mnist", arch="vgg_small", activation="tanh")
  with pytest.raises(ConfigError, match="only the MLP takes"):
    build_network(conv.model, dataset_info(conv.data))
