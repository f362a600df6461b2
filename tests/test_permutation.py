import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.errors import LmcError
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.spec import (
  apply_permutation,
  compose_permutations,
  flatten,
  invert_permutation,
  mlp_permutation_spec,
  perm_sizes,
  permute_zoo,
  random_permutation,
  validate_spec,
)
from tests.helpers import random_params


@pytest.mark.parametrize("hidden, layernorm", [
    ((7,), "none"), ((5, 6, 4), "none"), ((5, 6, 4), "after_relu"), ((5, 6, 4), "before_relu")])
def test_permuted_network_computes_the_same_function(hidden, layernorm):
  model, params = random_params(jax.random.key(0), hidden, d_in=3, d_out=2, layernorm=layernorm)
  spec = mlp_permutation_spec(len(hidden), layernorm != "none")
  validate_spec(spec, params)
  perm = random_permutation(jax.random.key(1), perm_sizes(spec, params))
  assert all((perm[p] != np.arange(len(perm[p]))).any() for p in perm)
  permuted = apply_permutation(spec, perm, params)
  x = random_draws.normal(jax.random.key(2), (16, 3))
  apply = jax.jit(model.apply)  # one program for both, not one per layer op
  out, out_p = apply({"params": params}, x), apply({"params": permuted}, x)
  np.testing.assert_allclose(out, out_p, rtol=1e-5, atol=1e-5)
  # ... while the weights themselves did change.
  assert not np.allclose(params["Dense_0"]["kernel"], permuted["Dense_0"]["kernel"])


def test_permutation_acts_on_the_axes_the_spec_names():
  spec = mlp_permutation_spec(1, layernorm=True)
  params = {"Dense_0": {"kernel": np.arange(6.).reshape(2, 3), "bias": np.array([0., 1., 2.])},
            "LayerNorm_0": {"scale": np.array([5., 6., 7.]), "bias": np.array([8., 9., 10.])},
            "Dense_1": {"kernel": np.array([[1.], [2.], [3.]]), "bias": np.array([4.])}}
  p = {"P_0": np.array([2, 0, 1])}
  out = apply_permutation(spec, p, params)
  np.testing.assert_array_equal(out["Dense_0"]["kernel"], [[2, 0, 1], [5, 3, 4]])
  np.testing.assert_array_equal(out["Dense_0"]["bias"], [2, 0, 1])
  np.testing.assert_array_equal(out["LayerNorm_0"]["scale"], [7, 5, 6])
  np.testing.assert_array_equal(out["LayerNorm_0"]["bias"], [10, 8, 9])
  np.testing.assert_array_equal(out["Dense_1"]["kernel"][:, 0], [3, 1, 2])
  np.testing.assert_array_equal(out["Dense_1"]["bias"], [4])


def test_invert_and_compose():
  _, params = random_params(jax.random.key(3), (6, 5))
  spec = mlp_permutation_spec(2)
  sizes = perm_sizes(spec, params)
  p, q = random_permutation(jax.random.key(4), sizes), random_permutation(jax.random.key(5), sizes)
  back = apply_permutation(spec, invert_permutation(p), apply_permutation(spec, p, params))
  twice = apply_permutation(spec, p, apply_permutation(spec, q, params))
  once = apply_permutation(spec, compose_permutations(p, q), params)
  for k, v in flatten(params).items():
    np.testing.assert_array_equal(flatten(back)[k], v)
    np.testing.assert_array_equal(flatten(twice)[k], flatten(once)[k])


def test_permute_zoo_applies_each_models_permutation():
  _, a = random_params(jax.random.key(6), (4,))
  _, b = random_params(jax.random.key(7), (4,))
  spec = mlp_permutation_spec(1)
  stack = jax.tree_util.tree_map(lambda u, v: jnp.stack([u, v]), a, b)
  perms = [{"P_0": np.array([1, 0, 3, 2])}, {"P_0": np.array([3, 2, 1, 0])}]
  out = permute_zoo(spec, perms, stack)
  # The permutations as lists (read from JSON) and as tracers (inside a jitted function).
  listed = permute_zoo(spec, [{"P_0": pk["P_0"].tolist()} for pk in perms], stack)
  traced = jax.jit(lambda p0, p1: permute_zoo(spec, [{"P_0": p0}, {"P_0": p1}], stack))(
      perms[0]["P_0"], perms[1]["P_0"])
  for k, theta in enumerate((a, b)):
    want = flatten(apply_permutation(spec, perms[k], theta))
    for got in (out, listed, traced):
      for path, v in flatten(got).items():
        np.testing.assert_array_equal(v[k], want[path])


def test_validate_spec_names_what_is_wrong():
  _, params = random_params(jax.random.key(0), (4, 4), layernorm="after_relu")
  with pytest.raises(LmcError, match="LayerNorm_0/scale"):
    validate_spec(mlp_permutation_spec(2, layernorm=False), params)
  with pytest.raises(LmcError, match="spec entries without a leaf"):
    validate_spec(mlp_permutation_spec(3, layernorm=True), params)
  _, p1 = random_params(jax.random.key(0), (4, 5))
  spec = mlp_permutation_spec(2)
  bad = dict(spec.axes_to_perm)
  bad["Dense_1/kernel"] = ("P_1", "P_0")  # axes swapped: lengths 4 and 5 disagree
  from lmc_jax.symmetry.spec import permutation_spec_from_axes
  with pytest.raises(LmcError, match="same length"):
    validate_spec(permutation_spec_from_axes(bad), p1)
  bad["Dense_1/kernel"] = ("P_0",)
  with pytest.raises(LmcError, match="axes for Dense_1/kernel"):
    validate_spec(permutation_spec_from_axes(bad), p1)
