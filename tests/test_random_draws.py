"""Draws compiled per size class (`nn.random_draws`) and the initializers built on them
(`nn.initializers`) give jax's and Flax's numbers bit for bit: every shape, dtype and bound,
on a concrete key, under vmap (how a zoo is initialised) and under jit, and each network's
initial variables are the ones drawn shape by shape."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.nn import initializers as inits
from lmc_jax.nn import random_draws, transformer
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import init_variables
from lmc_jax.zoo.training import init_params

SHAPES = [(), (5,), (7, 5, 3), (4096,), (4097,), (3, 3, 16, 16)]  # bucket ends at 4096


def _same(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape and a.dtype == b.dtype
  assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_draws_equal_jax_random_for_every_shape(dtype):
  key = jax.random.key(3)
  for shape in SHAPES:
    _same(random_draws.uniform(key, shape, dtype, -0.3, 0.7),
          jax.random.uniform(key, shape, dtype, -0.3, 0.7))
    _same(random_draws.normal(key, shape, dtype), jax.random.normal(key, shape, dtype))
    _same(random_draws.truncated_normal(key, -2, 2, shape, dtype),
          jax.random.truncated_normal(key, -2, 2, shape, dtype))


def test_draws_under_vmap_and_jit_and_with_raw_keys():
  keys = jax.random.split(jax.random.key(0), 3)
  _same(jax.vmap(lambda k: random_draws.normal(k, (6, 5)))(keys),
        jax.vmap(lambda k: jax.random.normal(k, (6, 5)))(keys))
  _same(jax.jit(lambda k: random_draws.uniform(k, (4, 9), jnp.float32, -1.0))(keys[0]),
        jax.random.uniform(keys[0], (4, 9), jnp.float32, -1.0))
  raw = jax.random.PRNGKey(1)
  _same(random_draws.normal(raw, (3, 7)), jax.random.normal(raw, (3, 7)))
  low = jnp.arange(12.0).reshape(3, 4)  # bounds per element: drawn as asked
  _same(random_draws.uniform(raw, (3, 4), jnp.float32, low, low + 1),
        jax.random.uniform(raw, (3, 4), jnp.float32, low, low + 1))


def test_shapes_of_one_size_class_share_one_draw(monkeypatch):
  asked = []
  draw = jax.random.normal
  monkeypatch.setattr(jax.random, "normal", lambda k, s, d: asked.append(s) or draw(k, s, d))
  key = jax.random.key(0)
  for shape in [(3, 4), (5, 7), (2, 3, 5), (100,), (64, 64)]:
    random_draws.normal(key, shape, jnp.float32)
  assert asked == [(4096,)] * 5
  # Then powers of four up to 64 Ki elements, powers of two from there on.
  asked.clear()
  for size in (4097, 16384, 16385, 65536, 65537, 131072, 131073):
    random_draws.normal(key, (size,), jnp.float32)
  assert asked == [(16384,), (16384,), (65536,), (65536,), (131072,), (131072,), (262144,)]
  # Another PRNG implementation counts otherwise: its draws go to jax.random as asked.
  asked.clear()
  random_draws.normal(jax.random.key(0, impl="rbg"), (3, 4), jnp.float32)
  assert asked == [(3, 4)]


def test_initializers_equal_flaxs():
  key, dtype = jax.random.key(7), jnp.float32
  pairs = [(inits.lecun_normal(), nn.initializers.lecun_normal()),
           (transformer.KERNEL_INIT, nn.linear.default_kernel_init),
           (inits.he_normal(), nn.initializers.he_normal()),
           (inits.he_uniform(), nn.initializers.he_uniform()),
           (inits.normal(0.02), nn.initializers.normal(0.02)),
           (transformer.EMBED_INIT, nn.linear.default_embed_init)]
  pairs += [(inits.variance_scaling(s, m, d), nn.initializers.variance_scaling(s, m, d))
            for s in (0.5, 2.0) for m in inits.MODES for d in inits.DISTRIBUTIONS]
  for ours, flax in pairs:
    for shape in [(16, 64), (3, 3, 4, 8)]:
      _same(ours(key, shape, dtype), flax(key, shape, dtype))
  _same(inits.lecun_normal()(key, (2, 4, 6), jnp.bfloat16),
        nn.initializers.lecun_normal()(key, (2, 4, 6), jnp.bfloat16))
  bound = 1 / np.sqrt(12)
  _same(inits.torch_uniform(12)(key, (12, 5), dtype),
        jax.random.uniform(key, (12, 5), dtype, -bound, bound))
  with pytest.raises(ValueError, match="mode"):
    inits.variance_scaling(1.0, "fan_sideways", "normal")


@pytest.mark.parametrize("dataset, arch, options", [
    ("moons", "mlp", dict(hidden=(5, 7), init="pytorch", layernorm="after_relu")),
    ("mnist", "vgg_small", dict(hidden=(1,), norm="batchnorm")),
    ("mnist", "vit", dict(hidden=(1,))),
])
def test_a_zoo_starts_from_the_variables_drawn_shape_by_shape(dataset, arch, options,
                                                              monkeypatch):
  config = default_config(dataset, arch=arch, num_models=2, **options)
  model = model_for(config)
  d_in = 2 if dataset == "moons" else 784
  keys = jax.random.split(jax.random.key(5), 2)
  bucketed = init_params(model, d_in, keys)  # one model at a time, stacked
  vmapped = jax.vmap(lambda k: init_variables(model, k, d_in))(keys)
  monkeypatch.setattr(random_draws, "MAX_BUCKETED", 0)  # every draw at its own shape
  plain = init_params(model, d_in, keys)
  assert jax.tree_util.tree_structure(bucketed) == jax.tree_util.tree_structure(plain) \
      == jax.tree_util.tree_structure(vmapped)
  for a, b, c in zip(*map(jax.tree_util.tree_leaves, (bucketed, plain, vmapped))):
    _same(a, b)
    _same(a, c)
