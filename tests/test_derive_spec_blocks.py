"""`derive_spec` on axes made of blocks: a DenseNet's concatenated channels, a U-Net skip of
another width than the upsampled map, two equal halves that are independent (two
permutations) or tied (one); a concatenation flattened into another axis is refused by
name. Oracles: partitions and blocks worked out by hand, the outputs under each group
alone, planted permutations recovered by weight matching."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import LmcError, check_spec, derive_spec
from lmc_jax.align.activation import activation_matching
from lmc_jax.align.weight import weight_matching
from lmc_jax.align.weight_device import match_many
from lmc_jax.merging.zip import zip_models
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.spec import (
  apply_permutation,
  invert_permutation,
  perm_sizes,
  random_permutation,
)
from tests.test_derive_spec import partition
from tests.test_derive_spec_more import _each_group_alone_is_a_symmetry, _randomised


def _x():
  return random_draws.normal(jax.random.key(0), (3, 4, 4, 2))


class DenseBlock(nn.Module):
  """Each layer reads every earlier layer's channels concatenated (4, then 4 + 3)."""
  @nn.compact
  def __call__(self, x):
    a = nn.relu(nn.Conv(4, (3, 3), name="c0")(x))
    h = jnp.concatenate([a, nn.relu(nn.Conv(3, (3, 3), name="c1")(a))], -1)
    h = jnp.concatenate([h, nn.relu(nn.Conv(5, (3, 3), name="c2")(h))], -1)
    return nn.Dense(3, name="head")(h.mean((1, 2)))


def test_a_dense_block_gives_each_block_its_own_permutation():
  model, x = DenseBlock(), _x()
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  # c2 reads (c0 | c1), the head (c0 | c1 | c2): leaves of blocks, each block its own leaf.
  assert spec.blocks == {"params/c2/kernel": (2, (4, 3)), "params/head/kernel": (0, (4, 3, 5))}
  c0 = {("params/c0/kernel", 3), ("params/c0/bias", 0), ("params/c1/kernel", 2),
        ("params/c2/kernel[0]", 2), ("params/head/kernel[0]", 0)}
  c1 = {("params/c1/kernel", 3), ("params/c1/bias", 0), ("params/c2/kernel[1]", 2),
        ("params/head/kernel[1]", 0)}
  c2 = {("params/c2/kernel[0]", 3), ("params/c2/kernel[1]", 3), ("params/c2/bias", 0),
        ("params/head/kernel[2]", 0)}
  assert partition(spec) == {frozenset(s) for s in (c0, c1, c2)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  # By hand: permuting c1's channels moves rows 4..6 of the head's kernel, nothing else.
  perm = {"P_0": np.arange(4), "P_1": np.array([2, 0, 1]), "P_2": np.arange(5)}
  moved = np.asarray(apply_permutation(spec, perm, variables)["params"]["head"]["kernel"])
  rows = [0, 1, 2, 3, 6, 4, 5, 7, 8, 9, 10, 11]
  want = np.asarray(variables["params"]["head"]["kernel"])[rows]
  np.testing.assert_array_equal(moved, want)
  # The methods take the blocks with no help: host and jitted weight matching, and
  # activation matching (the units of c1, read only by leaves of blocks, where c1 makes
  # them) recover a planted permutation.
  planted = random_permutation(jax.random.key(3), perm_sizes(spec, variables))
  shuffled = apply_permutation(spec, planted, variables)
  found = weight_matching(jax.random.key(0), spec, variables, shuffled).perm
  stack = lambda t: jax.tree_util.tree_map(lambda v: jax.device_put(np.asarray(v)[None]), t)
  device, _ = match_many(spec, perm_sizes(spec, variables), jax.random.split(
      jax.random.key(5), 1), stack(variables), stack(shuffled))
  x_many = random_draws.normal(jax.random.key(4), (32, 4, 4, 2))
  by_activations = activation_matching(model, spec, variables, shuffled, x_many)
  for p in planted:
    np.testing.assert_array_equal(found[p], invert_permutation(planted)[p])
    np.testing.assert_array_equal(np.asarray(device[p])[0], invert_permutation(planted)[p])
    np.testing.assert_array_equal(by_activations[p], invert_permutation(planted)[p])


def test_zipit_merges_a_dense_block_with_its_permuted_copy_into_the_same_net():
  model, x = DenseBlock(), _x()
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  shuffled = apply_permutation(spec, random_permutation(jax.random.key(3), perm_sizes(
      spec, variables)), variables)
  x_many = random_draws.normal(jax.random.key(4), (64, 4, 4, 2))
  merged, _ = zip_models(model, spec, variables, shuffled, x_many, alpha=0.0, beta=0.0)
  apply = jax.jit(model.apply)  # one program, not one per op
  base = np.asarray(apply(variables, x_many))
  assert np.max(np.abs(np.asarray(apply(merged, x_many)) - base)) < 1e-5
  naive = jax.tree_util.tree_map(lambda a, b: (np.asarray(a) + np.asarray(b)) / 2, variables,
                                 shuffled)
  assert np.max(np.abs(np.asarray(apply(naive, x_many)) - base)) > 1e-2


class TanhDenseBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = jnp.tanh(nn.Conv(4, (3, 3), name="c0")(x))
    h = jnp.concatenate([a, jnp.tanh(nn.Conv(3, (3, 3), name="c1")(a))], -1)
    h = jnp.concatenate([h, jnp.tanh(nn.Conv(5, (3, 3), name="c2")(h))], -1)
    return nn.Dense(3, name="head")(h.mean((1, 2)))


def test_signs_of_blocks_flip_only_their_block():
  model, x = TanhDenseBlock(), _x()
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  # tanh is odd and nothing else mixes units: every group may flip, negating every leaf
  # axis (or block's axis) it acts on; the other blocks of a leaf stay as they are.
  assert len(spec.perm_to_axes) == 3
  assert {p: set(v) for p, v in spec.signs.items()} == \
      {p: set(v) for p, v in spec.perm_to_axes.items()}
  assert check_spec(model, variables, spec, x, trials=6) < 1e-5


class UNet(nn.Module):
  """An encoder level (4 channels), a strided bottleneck (6), a transposed conv back up
  (5) concatenated with the skip (4), a decoder conv (3)."""
  @nn.compact
  def __call__(self, x):
    skip = nn.relu(nn.Conv(4, (3, 3), name="enc")(x))
    h = nn.relu(nn.Conv(6, (3, 3), strides=2, name="down")(skip))
    h = nn.relu(nn.ConvTranspose(5, (2, 2), strides=(2, 2), name="up")(h))
    h = nn.relu(nn.Conv(3, (3, 3), name="dec")(jnp.concatenate([h, skip], -1)))
    return nn.Dense(2, name="head")(h.mean((1, 2)))


def test_a_unet_skip_of_another_width():
  model, x = UNet(), _x()
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  assert spec.blocks == {"params/dec/kernel": (2, (5, 4))}
  enc = {("params/enc/kernel", 3), ("params/enc/bias", 0), ("params/down/kernel", 2),
         ("params/dec/kernel[1]", 2)}
  down = {("params/down/kernel", 3), ("params/down/bias", 0), ("params/up/kernel", 2)}
  up = {("params/up/kernel", 3), ("params/up/bias", 0), ("params/dec/kernel[0]", 2)}
  dec = {("params/dec/kernel[0]", 3), ("params/dec/kernel[1]", 3), ("params/dec/bias", 0),
         ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(s) for s in (enc, down, up, dec)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class ConcatThenFlatten(nn.Module):
  @nn.compact
  def __call__(self, x):
    a = nn.relu(nn.Conv(4, (3, 3), name="c0")(x))
    b = nn.relu(nn.Conv(3, (3, 3), name="c1")(a))
    h = jnp.concatenate([a, b], -1)
    return nn.Dense(3, name="head")(h.reshape(h.shape[0], -1))


def test_blocks_flattened_into_another_axis_are_refused_by_name(caplog):
  model, x = ConcatThenFlatten(), _x()
  variables = _randomised(model.init(jax.random.key(1), x))
  with pytest.raises(LmcError, match=r"can not follow `concatenate \(blocks flattened.*"
                                     r"params/head/kernel.*strict=False"):
    derive_spec(model, variables, x)
  spec = derive_spec(model, variables, x, strict=False)
  assert partition(spec) == set() and "leaves units unpermuted" in caplog.text
