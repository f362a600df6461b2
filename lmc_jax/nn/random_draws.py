"""Random draws that compile once per size class instead of once per shape.

`jax.random` compiles a draw for every shape it is asked for (a threefry hash and a
transform of its bits: 0.1-0.7 s of compile each on a CPU), and initialising a network, or a
test's inputs, asks for many shapes. With partitionable threefry (jax's default since 0.5)
element i of a draw is a function of the key and i alone, so the first n elements of a draw of
any length >= n are the draw of n elements, in row-major order. `uniform`, `normal` and
`truncated_normal` draw a bucketed length, cut it and reshape it: the same numbers as
`jax.random`'s functions of those names give for the same key, shape, dtype and bounds
(tests/test_random_draws.py), for one compiled draw per bucket: 4096 elements for anything
smaller (a draw that short costs microseconds), powers of four up to 64 Ki elements, powers
of two above (where a longer draw than needed would cost more time). A concrete draw in host
memory is cut by numpy (`host_arrays`); a traced one, or one on an accelerator, by a small
compiled cut per shape.

Keys of another PRNG implementation, non-partitionable threefry, bounds given per element and
very large draws go to `jax.random` unchanged. Works on concrete keys, under `vmap` and under `jit`.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from lmc_jax.host_arrays import host_view, like

# Draws up to this many elements are bucketed (a 4 M-element draw compiles in the same time
# as a small one, and twice its length costs less than its compile); larger ones are not.
MAX_BUCKETED = 1 << 22
SMALLEST_BUCKET = 1 << 12
# Below this length buckets are powers of four (each compile saved is worth more than the
# draw's extra length, well under a millisecond); from it on, powers of two.
POWERS_OF_FOUR_BELOW = 1 << 16


def _bucket(size: int) -> int:
  """The length drawn for `size` elements: SMALLEST_BUCKET, a power of four below
  POWERS_OF_FOUR_BELOW, a power of two from there on; never less than `size`."""
  bits = max(SMALLEST_BUCKET.bit_length() - 1, max(0, size - 1).bit_length())
  if (1 << bits) < POWERS_OF_FOUR_BELOW:
    bits += bits % 2
  return 1 << bits


def _bucketable(key, size: int) -> bool:
  if size > MAX_BUCKETED or not jax.config.jax_threefry_partitionable:
    return False
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return str(jax.random.key_impl(key)) == "threefry2x32"
  return jax.config.jax_default_prng_impl == "threefry2x32"  # a raw uint32 key


@functools.partial(jax.jit, static_argnums=1)
def _cut(block, shape):
  """The first prod(shape) elements of `block`, in `shape`."""
  return block[:math.prod(shape)].reshape(shape)


def _per_size_class(draw, key, shape, *bounds):
  """`draw(shape)`, made as `draw((bucket,))` cut to `shape` where that gives the same
  numbers (`draw` maps a shape to a `jax.random` draw with `key`; `bounds` its bounds)."""
  shape = tuple(shape)
  size = math.prod(shape)
  if not _bucketable(key, size) or any(jnp.ndim(b) for b in bounds):  # bounds per element
    return draw(shape)
  block = draw((_bucket(size),))
  view = host_view(block)
  if view is not None:  # concrete and in host memory: cut by numpy, nothing compiled
    return like(view[:size].reshape(shape), block)
  return _cut(block, shape)


def uniform(key, shape=(), dtype=jnp.float32, minval=0.0, maxval=1.0):
  """`jax.random.uniform(key, shape, dtype, minval, maxval)`, compiled per size class."""
  return _per_size_class(lambda s: jax.random.uniform(key, s, dtype, minval, maxval), key,
                         shape, minval, maxval)


def normal(key, shape=(), dtype=jnp.float32):
  """`jax.random.normal(key, shape, dtype)`, compiled per size class."""
  return _per_size_class(lambda s: jax.random.normal(key, s, dtype), key, shape)


def truncated_normal(key, lower, upper, shape=(), dtype=jnp.float32):
  """`jax.random.truncated_normal(key, lower, upper, shape, dtype)`, compiled per size class."""
  return _per_size_class(lambda s: jax.random.truncated_normal(key, lower, upper, s, dtype),
                         key, shape, lower, upper)
