"""`derive_spec` through slices, gathers, flips and paddings of axes that can never carry
hidden units: a ViT reading its class token (`x[:, 0]`), a transposed convolution that
flips its kernel's taps, flips, crops and paddings of feature maps. The same ops on hidden
units are still refused by name. Oracles: partitions worked out by hand, and the outputs
under each group alone."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lmc_jax import LmcError, check_spec, derive_spec
from lmc_jax.nn import random_draws
from tests.test_derive_spec import partition
from tests.test_derive_spec_more import _each_group_alone_is_a_symmetry, _init, _randomised

A = "params/attn/"
HEADS = {(A + f"{q}/kernel", 1) for q in ("query", "key", "value")} | \
    {(A + f"{q}/bias", 0) for q in ("query", "key", "value")} | {(A + "out/kernel", 0)}
QK = {(A + "query/kernel", 2), (A + "query/bias", 1), (A + "key/kernel", 2), (A + "key/bias", 1)}
V = {(A + "value/kernel", 2), (A + "value/bias", 1), (A + "out/kernel", 1)}
MLP = {("params/up/kernel", 1), ("params/up/bias", 0), ("params/down/kernel", 0)}


class ClassTokenViT(nn.Module):
  """Patches by a strided conv, a class token prepended, learned positions, one pre-LN
  block; `pool="cls"` reads the class token (`x[:, 0]`), `"take"` the tokens 0 and 2 by a
  gather."""
  pool: str = "cls"

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(8, (2, 2), strides=2, name="patch")(x)
    h = h.reshape(h.shape[0], -1, 8)
    cls = self.param("cls", nn.initializers.normal(0.1), (1, 1, 8))
    h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, 8)), h], 1)
    h = h + self.param("pos", nn.initializers.normal(0.1), (1, h.shape[1], 8))
    y = nn.LayerNorm(name="ln1")(h)
    h = h + nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(y, y)
    y = nn.Dense(16, name="up")(nn.LayerNorm(name="ln2")(h))
    h = nn.LayerNorm(name="ln3")(h + nn.Dense(8, name="down")(nn.gelu(y)))
    h = h[:, 0] if self.pool == "cls" else jnp.take(h, jnp.array([0, 2]), axis=1).sum(1)
    return nn.Dense(3, name="head")(h)


@pytest.mark.parametrize("pool", ["cls", "take"])
def test_a_vit_reading_its_class_token(pool):
  model = ClassTokenViT(pool)
  x = random_draws.normal(jax.random.key(0), (3, 4, 4, 2))
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  ln = lambda n: {(f"params/{n}/scale", 0), (f"params/{n}/bias", 0)}
  # The stream: the patch embedding's channels, the class token's and the positions'
  # features (not their token axes: positions can not move), every norm and every
  # projection into or out of the stream.
  stream = {("params/patch/kernel", 3), ("params/patch/bias", 0), ("params/cls", 2),
            ("params/pos", 2), *ln("ln1"), *ln("ln2"), *ln("ln3"),
            *{(A + f"{q}/kernel", 0) for q in ("query", "key", "value")},
            (A + "out/kernel", 2), (A + "out/bias", 0), ("params/up/kernel", 0),
            ("params/down/kernel", 1), ("params/down/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(s) for s in (stream, HEADS, QK, V, MLP)}
  assert spec.axes_to_perm["params/pos"][1] is None
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class TransposedConvNet(nn.Module):
  """A conv, a transposed conv (its kernel's taps flipped with `transpose_kernel=True`),
  a flip, a padding and a crop of the feature map, and a mean-pooled head."""
  transpose_kernel: bool = True

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(4, (3, 3), name="c0")(x))
    h = nn.relu(nn.ConvTranspose(5, (3, 3), strides=(2, 2), name="up",
                                 transpose_kernel=self.transpose_kernel)(h))
    h = jnp.pad(jnp.flip(h, (1, 2)), ((0, 0), (1, 2), (0, 1), (0, 0)))[:, 1:-1, :-2]
    h = nn.relu(nn.Conv(6, (3, 3), name="c1")(h))
    return nn.Dense(3, name="head")(h.mean((1, 2)))


@pytest.mark.parametrize("transpose_kernel", [True, False])
def test_a_transposed_convolution_and_flips_paddings_crops_of_feature_maps(transpose_kernel):
  model = TransposedConvNet(transpose_kernel)
  x = random_draws.normal(jax.random.key(0), (3, 4, 4, 2))
  variables = _randomised(_init(model, x))
  spec = derive_spec(model, variables, x)
  # Flax keeps a transposed kernel as (taps, taps, out, in) with transpose_kernel=True,
  # (taps, taps, in, out) without.
  k_in, k_out = (3, 2) if transpose_kernel else (2, 3)
  c0 = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/up/kernel", k_in)}
  up = {("params/up/kernel", k_out), ("params/up/bias", 0), ("params/c1/kernel", 2)}
  c1 = {("params/c1/kernel", 3), ("params/c1/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(s) for s in (c0, up, c1)}
  assert spec.axes_to_perm["params/up/kernel"][:2] == (None, None)
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class OnHidden(nn.Module):
  """The same ops on the hidden units themselves: a flip, a padding, a gather of some."""
  op: str

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(6, name="inner")(x))
    if self.op == "rev":
      h = jnp.flip(h, -1)
    elif self.op == "pad":
      h = jnp.pad(h, ((0, 0), (0, 2)))
    else:
      h = jnp.take(h, jnp.array([0, 2, 3]), axis=1)
    return nn.Dense(2, name="head")(h)


@pytest.mark.parametrize("op", ["rev", "pad", "gather"])
def test_the_same_ops_on_hidden_units_are_refused_by_name(op):
  x = random_draws.normal(jax.random.key(0), (3, 4))
  module = OnHidden(op)
  variables = module.init(jax.random.key(1), x)
  with pytest.raises(LmcError, match=rf"can not follow `{op}`.*params/inner/kernel.*by hand"):
    derive_spec(module, variables, x)
