"""`derive_spec` on more networks nobody wrote for lmc_jax: a token transformer (nn.Embed's
gather); flattens, GroupNorm, grouped convolutions (products of axes, through views of the
leaves); equal-size splits and concatenations (blocks of the leaves); and an op whose
symmetry a spec of views and blocks can not hold (channel blocks flattened with the
positions), which `strict=False` leaves unpermuted. Oracles: partitions worked out by
hand, and the outputs under each group alone."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import LmcError, check_spec, derive_spec
from lmc_jax.align.weight import weight_matching
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.spec import (
  apply_permutation,
  invert_permutation,
  perm_sizes,
  random_permutation,
)
from tests.test_derive_spec import partition


def _randomised(variables, seed=2):
  """Every leaf moved by 0.3 of a normal draw (the sum taken by numpy: no program per shape)."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(tree, [
      jax.device_put(np.asarray(v) + np.float32(0.3) * np.asarray(random_draws.normal(k, v.shape)))
      for k, v in zip(keys, leaves)])


def _init(model, x):
  """Flax's init as one compiled program, not one per op."""
  return jax.jit(model.init)(jax.random.key(1), x)


def _each_group_alone_is_a_symmetry(model, variables, spec, x):
  apply = jax.jit(model.apply)  # one program, not one per op
  base = apply(variables, x)
  for name, n in perm_sizes(spec, variables).items():
    perm = {p: np.arange(m) for p, m in perm_sizes(spec, variables).items()}
    perm[name] = np.roll(perm[name], 1)
    np.testing.assert_allclose(apply(apply_permutation(spec, perm, variables), x), base,
                               atol=1e-5, err_msg=name)


class TokenTransformer(nn.Module):
  """Embedding + learned positions, a pre-LN attention block and MLP, mean-pooled readout."""
  @nn.compact
  def __call__(self, tokens):
    h = nn.Embed(20, 8, name="embed")(tokens)
    h = h + self.param("pos", nn.initializers.normal(0.1), (tokens.shape[1], 8))
    y = nn.LayerNorm(name="ln1")(h)
    h = h + nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(y, y)
    y = nn.Dense(16, name="up")(nn.LayerNorm(name="ln2")(h))
    h = h + nn.Dense(8, name="down")(nn.gelu(y))
    return nn.Dense(3, name="head")(nn.LayerNorm(name="ln3")(h).mean(1))


def test_token_transformer_partition_by_hand():
  model = TokenTransformer()
  tokens = jax.random.randint(jax.random.key(0), (3, 5), 0, 20)
  variables = _randomised(_init(model, tokens))
  spec = derive_spec(model, variables, tokens)
  a = "params/attn/"
  ln = lambda n: {(f"params/{n}/scale", 0), (f"params/{n}/bias", 0)}
  # The residual stream: the embedding's features (not its vocabulary axis, which the
  # tokens index), the positions, every norm, every projection in or out of the stream.
  stream = {("params/embed/embedding", 1), ("params/pos", 1), *ln("ln1"), *ln("ln2"),
            *ln("ln3"), *{(a + f"{q}/kernel", 0) for q in ("query", "key", "value")},
            (a + "out/kernel", 2), (a + "out/bias", 0), ("params/up/kernel", 0),
            ("params/down/kernel", 1), ("params/down/bias", 0), ("params/head/kernel", 0)}
  heads = {(a + f"{q}/kernel", 1) for q in ("query", "key", "value")} | \
      {(a + f"{q}/bias", 0) for q in ("query", "key", "value")} | {(a + "out/kernel", 0)}
  qk = {(a + "query/kernel", 2), (a + "query/bias", 1), (a + "key/kernel", 2), (a + "key/bias", 1)}
  v = {(a + "value/kernel", 2), (a + "value/bias", 1), (a + "out/kernel", 1)}
  mlp = {("params/up/kernel", 1), ("params/up/bias", 0), ("params/down/kernel", 0)}
  assert partition(spec) == {frozenset(s) for s in (stream, heads, qk, v, mlp)}
  assert spec.axes_to_perm["params/embed/embedding"][0] is None
  _each_group_alone_is_a_symmetry(model, variables, spec, tokens)
  planted = random_permutation(jax.random.key(3), perm_sizes(spec, variables))
  found = weight_matching(jax.random.key(0), spec, variables,
                          apply_permutation(spec, planted, variables)).perm
  for p in planted:
    np.testing.assert_array_equal(found[p], invert_permutation(planted)[p])


class GroupNormNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.GroupNorm(num_groups=2, name="gn")(nn.Conv(8, (3, 3), name="c0")(x)))
    h = nn.relu(nn.Dense(5, name="d0")(h.mean((1, 2))))
    return nn.Dense(3, name="head")(h)


class FlatConcatNet(nn.Module):
  """Unequal channel blocks concatenated, then flattened with the positions: blocks inside
  a product, which no spec of views and blocks holds."""
  @nn.compact
  def __call__(self, x):
    a = nn.relu(nn.Conv(4, (3, 3), name="c0")(x))
    b = nn.relu(nn.Conv(3, (3, 3), name="c1")(a))
    h = jnp.concatenate([a, b], -1)
    h = nn.relu(nn.Dense(5, name="d0")(h.reshape(h.shape[0], -1)))
    return nn.Dense(3, name="head")(h)


class GatedNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(5, name="d0")(x.reshape(x.shape[0], -1)))
    u, g = jnp.split(nn.Dense(12, name="gate")(h), 2, -1)
    return nn.Dense(3, name="head")(u * nn.sigmoid(g))


class GroupedConvNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(8, (3, 3), name="c0")(x))
    h = nn.relu(nn.Conv(8, (3, 3), feature_group_count=2, name="c1")(h))
    h = nn.relu(nn.Dense(5, name="d0")(h.mean((1, 2))))
    return nn.Dense(3, name="head")(h)


class FlattenNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(3, (3, 3), name="c0")(x))
    h = nn.relu(nn.Dense(5, name="d0")(h.reshape(h.shape[0], -1)))
    return nn.Dense(3, name="head")(h)


D0 = {("params/d0/kernel", 1), ("params/d0/bias", 0), ("params/head/kernel", 0)}


@pytest.mark.parametrize("module, op, free", [
    (FlatConcatNet(), "concatenate", [D0]),
])
def test_ops_it_can_not_follow_are_named_or_left_unpermuted(module, op, free, caplog):
  x = random_draws.normal(jax.random.key(0), (3, 4, 4, 2))
  variables = _randomised(_init(module, x))
  with pytest.raises(LmcError, match=rf"can not follow `{op}.*strict=False"):
    derive_spec(module, variables, x)
  spec = derive_spec(module, variables, x, strict=False)
  assert partition(spec) == {frozenset(s) for s in free}
  assert "leaves units unpermuted" in caplog.text and op in caplog.text
  assert check_spec(module, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(module, variables, spec, x)
  # Nothing the op touches moves: every other leaf keeps all its axes unpermuted.
  moved = {path for path, _ in set().union(*free)}
  for path, axes in spec.axes_to_perm.items():
    if path not in moved:
      assert axes == (None,) * len(axes), path


def _x_img():
  return random_draws.normal(jax.random.key(0), (3, 4, 4, 2))


def test_a_flatten_into_a_dense_layer_permutes_the_channel_factor_of_its_kernel():
  model, x = FlattenNet(), _x_img()
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  # The (4*4*3, 5) kernel is viewed as (4, 4, 3, 5): positions fixed, channels with c0.
  assert spec.views == {"params/d0/kernel": (4, 4, 3, 5)}
  channels = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/d0/kernel", 2)}
  hidden = {("params/d0/kernel", 3), ("params/d0/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(channels), frozenset(hidden)}
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  # By hand: the channel permutation moves rows c, c+3, c+6, ... of the flat kernel.
  perm = {"P_0": np.array([2, 0, 1]), "P_1": np.arange(5)}
  moved = apply_permutation(spec, perm, variables)["params"]["d0"]["kernel"]
  flat = np.asarray(variables["params"]["d0"]["kernel"]).reshape(16, 3, 5)
  np.testing.assert_array_equal(np.asarray(moved).reshape(16, 3, 5), flat[:, [2, 0, 1]])
  planted = random_permutation(jax.random.key(3), perm_sizes(spec, variables))
  found = weight_matching(jax.random.key(0), spec, variables,
                          apply_permutation(spec, planted, variables)).perm
  for p in planted:
    np.testing.assert_array_equal(found[p], invert_permutation(planted)[p])


def test_group_norm_permutes_groups_and_the_units_within_them():
  model, x = GroupNormNet(), _x_img()
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  # Channels (8) = 2 groups x 4: one permutation of the groups, one of the units within
  # every group (the same for each: the form a spec of one permutation per axis holds).
  views = {"params/c0/kernel": (3, 3, 2, 2, 4), "params/c0/bias": (2, 4),
           "params/gn/scale": (2, 4), "params/gn/bias": (2, 4), "params/d0/kernel": (2, 4, 5)}
  assert spec.views == views
  groups = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/gn/scale", 0),
            ("params/gn/bias", 0), ("params/d0/kernel", 0)}
  within = {(path, axis + 1) for path, axis in groups}
  assert partition(spec) == {frozenset(groups), frozenset(within), frozenset(D0)} - {
      frozenset(D0)} | {frozenset({("params/d0/kernel", 2), ("params/d0/bias", 0),
                                   ("params/head/kernel", 0)})}
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  assert check_spec(model, variables, spec, x) < 1e-5


class EqualConcatNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = jnp.tanh(nn.Conv(4, (3, 3), name="c0")(x))
    b = jnp.tanh(nn.Conv(4, (3, 3), name="c1")(a))
    return nn.Dense(3, name="head")(jnp.concatenate([a, b], -1).mean((1, 2)))


def test_equal_pieces_are_blocks_tied_where_the_net_ties_them_and_independent_otherwise():
  x = _x_img()
  gated = GatedNet()
  variables = _randomised(_init(gated, x))
  spec = derive_spec(gated, variables, x)
  # The gate's output is split in two blocks; `u * sigmoid(g)` multiplies unit i of one by
  # unit i of the other, so both blocks take one permutation.
  assert spec.views == {}
  assert spec.blocks == {"params/gate/kernel": (1, (6, 6)), "params/gate/bias": (0, (6, 6))}
  halves = {("params/gate/kernel[0]", 1), ("params/gate/kernel[1]", 1),
            ("params/gate/bias[0]", 0), ("params/gate/bias[1]", 0), ("params/head/kernel", 0)}
  hidden = {("params/d0/kernel", 1), ("params/d0/bias", 0), ("params/gate/kernel[0]", 0),
            ("params/gate/kernel[1]", 0)}
  assert partition(spec) == {frozenset(halves), frozenset(hidden)}
  _each_group_alone_is_a_symmetry(gated, variables, spec, x)
  # Two branches of one width concatenated are independent: two permutations, one per
  # block of the head's kernel. (Before blocks, the equal pieces were read as a product
  # (pieces, width) and forced to share one permutation: a smaller symmetry than the net's.)
  cat = EqualConcatNet()
  variables = _randomised(_init(cat, x))
  spec = derive_spec(cat, variables, x)
  assert spec.views == {} and spec.blocks == {"params/head/kernel": (0, (4, 4))}
  assert partition(spec) == {
      frozenset({("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/c1/kernel", 2),
                 ("params/head/kernel[0]", 0)}),
      frozenset({("params/c1/kernel", 3), ("params/c1/bias", 0), ("params/head/kernel[1]", 0)})}
  _each_group_alone_is_a_symmetry(cat, variables, spec, x)


class DepthwiseTimesTwo(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(4, (3, 3), name="c0")(x))
    h = nn.relu(nn.Conv(8, (3, 3), feature_group_count=4, name="dw")(h))  # 2 filters a channel
    return nn.Dense(3, name="head")(h.mean((1, 2)))


def test_grouped_convolutions_permute_groups_and_the_channels_within_them():
  x = _x_img()
  model = GroupedConvNet()  # c0: 8 channels; c1: 2 groups of 4 -> 2 groups of 4
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  assert spec.views == {"params/c0/kernel": (3, 3, 2, 2, 4), "params/c0/bias": (2, 4),
                        "params/c1/kernel": (3, 3, 4, 2, 4), "params/c1/bias": (2, 4),
                        "params/d0/kernel": (2, 4, 5)}
  groups = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/c1/kernel", 3),
            ("params/c1/bias", 0), ("params/d0/kernel", 0)}
  within_in = {("params/c0/kernel", 4), ("params/c0/bias", 1), ("params/c1/kernel", 2)}
  within_out = {("params/c1/kernel", 4), ("params/c1/bias", 1), ("params/d0/kernel", 1)}
  hidden = {("params/d0/kernel", 2), ("params/d0/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(g) for g in (groups, within_in, within_out, hidden)}
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  model = DepthwiseTimesTwo()
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  assert spec.views == {"params/dw/kernel": (3, 3, 1, 4, 2), "params/dw/bias": (4, 2),
                        "params/head/kernel": (4, 2, 3)}
  channels = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/dw/kernel", 3),
              ("params/dw/bias", 0), ("params/head/kernel", 0)}
  filters = {("params/dw/kernel", 4), ("params/dw/bias", 1), ("params/head/kernel", 1)}
  assert partition(spec) == {frozenset(channels), frozenset(filters)}
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
