"""`max_pool_2x2` has flax.linen.max_pool's value and gradient (ties to the first largest
element of each window, odd edges dropped), alone and under `vmap`."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.nn.pooling import max_pool_2x2


def _reference(h):
  return nn.max_pool(h, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("shape", [(3, 6, 8, 5), (2, 7, 9, 4), (1, 5, 5, 3), (2, 2, 2, 1)])
def test_value_and_gradient_equal_flax_with_ties(shape):
  rng = np.random.default_rng(0)
  # Integers from a small range: many windows hold their largest value twice or more.
  h = jnp.asarray(rng.integers(-2, 3, size=shape).astype(np.float32))
  out = _reference(h)
  g = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
  np.testing.assert_array_equal(max_pool_2x2(h), out)
  ours = jax.vjp(max_pool_2x2, h)[1](g)[0]
  theirs = jax.vjp(_reference, h)[1](g)[0]
  np.testing.assert_array_equal(ours, theirs)
  # A plain loop: each window's gradient goes to its first largest element, row-major.
  loop = np.zeros(shape, np.float32)
  for n, i, j, c in np.ndindex(out.shape):
    window = np.asarray(h)[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].reshape(-1)
    k = int(np.argmax(window))
    loop[n, 2 * i + k // 2, 2 * j + k % 2, c] = g[n, i, j, c]
  np.testing.assert_array_equal(ours, loop)


def test_under_vmap_equals_flax():
  h = jnp.asarray(np.random.default_rng(1).integers(-2, 3, size=(2, 3, 6, 6, 4)), jnp.float32)
  ours = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(max_pool_2x2(x)))))(h)
  theirs = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(_reference(x)))))(h)
  np.testing.assert_array_equal(ours, theirs)
