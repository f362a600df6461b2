"""The ViT and the token decoder of `nn.transformer`, and the `modular_addition` data: the
derived spec of each equals a partition written here by hand (heads as blocks shared by
query, key, value and output; the features inside a head on their own permutations), each
group alone keeps the outputs, weight matching recovers a planted permutation; the data
holds every sum once with its answer computed here."""
import jax
import numpy as np
import pytest

from lmc_jax import derive_spec
from lmc_jax.align.weight import weight_matching
from lmc_jax.config import ConfigError, default_config
from lmc_jax.data.datasets import dataset_info, load_dataset
from lmc_jax.nn import random_draws
from lmc_jax.nn.architectures import build_network
from lmc_jax.nn.transformer import make_decoder, make_vit
from lmc_jax.symmetry.spec import (
  apply_permutation,
  invert_permutation,
  perm_sizes,
  random_permutation,
)
from tests.test_derive_spec import partition
from tests.test_derive_spec_more import _each_group_alone_is_a_symmetry, _randomised


def hand_partition(depth, extra_stream=()):
  """The groups of a pre-LN transformer of `depth` blocks written out: one residual stream,
  and per block its heads, the query/key features and the value features of a head, and
  the MLP's hidden units."""
  ln = lambda n: {(f"params/{n}/scale", 0), (f"params/{n}/bias", 0)}
  stream = {("params/pos", 1), *ln("LayerNorm_final"), ("params/head/kernel", 0), *extra_stream}
  groups = []
  for i in range(depth):
    b, a = f"params/Block_{i}/", f"params/Block_{i}/attn/"
    stream |= {*ln(f"Block_{i}/LayerNorm_0"), *ln(f"Block_{i}/LayerNorm_1"),
               *{(a + f"{q}/kernel", 0) for q in ("query", "key", "value")},
               (a + "out/kernel", 2), (a + "out/bias", 0), (b + "Dense_0/kernel", 0),
               (b + "Dense_1/kernel", 1), (b + "Dense_1/bias", 0)}
    heads = {(a + f"{q}/kernel", 1) for q in ("query", "key", "value")} | \
        {(a + f"{q}/bias", 0) for q in ("query", "key", "value")} | {(a + "out/kernel", 0)}
    qk = {(a + "query/kernel", 2), (a + "query/bias", 1), (a + "key/kernel", 2),
          (a + "key/bias", 1)}
    v = {(a + "value/kernel", 2), (a + "value/bias", 1), (a + "out/kernel", 1)}
    mlp = {(b + "Dense_0/kernel", 1), (b + "Dense_0/bias", 0), (b + "Dense_1/kernel", 0)}
    groups += [heads, qk, v, mlp]
  return {frozenset(g) for g in [stream, *groups]}


def _planted_permutation_is_recovered(spec, variables):
  planted = random_permutation(jax.random.key(3), perm_sizes(spec, variables))
  found = weight_matching(jax.random.key(0), spec, variables,
                          apply_permutation(spec, planted, variables)).perm
  for p in planted:
    np.testing.assert_array_equal(found[p], invert_permutation(planted)[p], err_msg=p)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_spec_is_the_hand_written_partition(pool):
  model = make_vit(1, 2, 4, 7, pool, 10, (14, 14, 1))
  x = random_draws.normal(jax.random.key(0), (3, 196))
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  patches = {("params/embed/kernel", 3), ("params/embed/bias", 0)}
  cls = {("params/cls", 2)} if pool == "cls" else set()
  assert partition(spec) == hand_partition(2, patches | cls)
  assert spec.axes_to_perm["params/pos"][0] is None  # token positions never move
  assert perm_sizes(spec, variables)[spec.axes_to_perm["params/Block_0/attn/out/kernel"][0]] == 4
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  _planted_permutation_is_recovered(spec, variables)


def test_decoder_spec_is_the_hand_written_partition():
  model = make_decoder(1, 1, 4, 8, 7)
  x = np.array([[1, 2, 7], [3, 6, 7], [0, 5, 7]], np.float32)
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  assert partition(spec) == hand_partition(1, {("params/embed/embedding", 1)})
  assert spec.axes_to_perm["params/embed/embedding"][0] is None  # the vocabulary
  _each_group_alone_is_a_symmetry(model, variables, spec, x)
  _planted_permutation_is_recovered(spec, variables)


def test_modular_addition_holds_every_sum_once():
  config = default_config("modular_addition", modulus=7, train_fraction=0.4, data_seed=3)
  data = load_dataset(config)
  info = dataset_info(config)
  x = np.concatenate([data.x_train, data.x_test]).astype(int)
  y = np.concatenate([data.y_train, data.y_test])
  assert sorted(map(tuple, x[:, :2].tolist())) == [(a, b) for a in range(7) for b in range(7)]
  assert (x[:, 2] == 7).all() and all(y[i] == sum(x[i, :2]) % 7 for i in range(49))
  assert (len(data.y_train), info.n_train, info.n_test, info.vocab) == (20, 20, 29, 8)
  again = load_dataset(config)
  np.testing.assert_array_equal(again.x_train, data.x_train)
  other = load_dataset(config.replace(data_seed=4))
  assert not np.array_equal(other.x_train, data.x_train)
  assert config.model.arch == "transformer"


@pytest.mark.parametrize("dataset, changes, field, words", [
    ("moons", dict(arch="vit"), "model.arch", "no images"),
    ("mnist", dict(arch="vit", patch=5), "model.patch", "does not divide the 28x28"),
    ("mnist", dict(arch="vit", heads=3), "model.heads", "does not divide the embedding width 32"),
    ("mnist", dict(arch="transformer"), "model.arch", "reads tokens"),
    ("mnist", dict(arch="vit", init="pytorch"), "model.init", "Flax's own"),
])
def test_bad_transformer_configs_are_refused_by_field(dataset, changes, field, words):
  config = default_config(dataset, **changes)
  with pytest.raises(ConfigError) as e:
    build_network(config.model, dataset_info(config))
  assert e.value.field == field and words in str(e.value)


def test_a_modulus_below_two_is_refused():
  with pytest.raises(ConfigError, match="data.modulus must be >= 2"):
    default_config("modular_addition", modulus=1)


def test_a_cifar10_vit_cuts_8x8_patches():
  config = default_config("cifar10", arch="vit", hidden=(1,))
  model = build_network(config.model, dataset_info(config))
  x = np.zeros((2, 3072), np.float32)
  variables = model.init(jax.random.key(0), x)
  assert (config.model.patch, variables["params"]["pos"].shape) == (8, (16, 32))
  assert model.apply(variables, x).shape == (2, 10)
