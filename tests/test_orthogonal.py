"""Orthogonal alignment (`align.orthogonal`): on a net with a linear bottleneck, the groups a
random rotation leaves the function of are exactly the bottleneck's (found numerically, and
written here by hand), a planted orthogonal map of it is recovered to float precision, and
a ReLU layer is refused by name."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from lmc_jax import LmcError, derive_spec
from lmc_jax.align.orthogonal import (
  apply_orthogonal,
  orthogonal_alignment,
  orthogonal_groups,
  random_orthogonal,
)
from lmc_jax.nn import random_draws


class Bottleneck(nn.Module):
  """x -> ReLU(Dense 12) -> Dense 4 (linear bottleneck) -> ReLU(Dense 12) -> Dense 3."""
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(12, name="in")(x))
    z = nn.Dense(4, name="down")(h)
    return nn.Dense(3, name="head")(nn.relu(nn.Dense(12, name="up")(z)))


@pytest.fixture(scope="module")
def net():
  model, x = Bottleneck(), random_draws.normal(jax.random.key(0), (16, 5))
  variables = jax.jit(model.init)(jax.random.key(1), x)  # one program, not one per op
  return model, variables, derive_spec(model, variables, x), x


def _group_of(spec, path, axis):
  return spec.axes_to_perm[path][axis]


def test_only_the_linear_bottleneck_may_rotate(net):
  model, variables, spec, x = net
  bottleneck = _group_of(spec, "params/down/kernel", 1)
  assert set(spec.perm_to_axes[bottleneck]) == {("params/down/kernel", 1),
                                                ("params/down/bias", 0), ("params/up/kernel", 0)}
  assert list(orthogonal_groups(model, variables, spec, x)) == [bottleneck]


def test_a_planted_orthogonal_map_is_recovered_to_float_precision(net):
  model, variables, spec, x = net
  p = _group_of(spec, "params/down/kernel", 1)
  q = random_orthogonal(jax.random.key(7), 4)
  assert np.abs(q @ q.T - np.eye(4)).max() < 1e-5 and np.abs(q - np.eye(4)).max() > 0.1
  rotated = apply_orthogonal(spec, {p: q}, variables)
  apply = jax.jit(model.apply)  # one program, not one per op
  np.testing.assert_allclose(apply(rotated, x), apply(variables, x), atol=1e-5)
  maps = orthogonal_alignment(spec, variables, rotated, [p],
                              allowed=orthogonal_groups(model, variables, spec, x))
  np.testing.assert_allclose(maps[p] @ q, np.eye(4), atol=1e-5)  # the inverse of the plant
  back = apply_orthogonal(spec, maps, rotated)
  for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(variables)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_relu_layer_is_refused_by_name(net):
  model, variables, spec, x = net
  relu = _group_of(spec, "params/in/kernel", 1)
  with pytest.raises(LmcError, match=f"Group {relu} .*params/in/kernel.* orthogonal map"):
    orthogonal_alignment(spec, variables, variables, [relu],
                         allowed=orthogonal_groups(model, variables, spec, x))


def test_in_a_vit_the_features_inside_heads_rotate_and_nothing_else():
  from lmc_jax.nn.transformer import make_vit
  from tests.test_derive_spec_more import _randomised
  model = make_vit(1, 1, 4, 7, "mean", 10, (14, 14, 1))
  x = random_draws.normal(jax.random.key(0), (3, 196))
  variables = _randomised(jax.jit(model.init)(jax.random.key(1), x))  # one program
  spec = derive_spec(model, variables, x)
  a = "params/Block_0/attn/"
  want = {_group_of(spec, a + "query/kernel", 2), _group_of(spec, a + "value/kernel", 2)}
  assert set(orthogonal_groups(model, variables, spec, x)) == want  # query.key, value -> out
