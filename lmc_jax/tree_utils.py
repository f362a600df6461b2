"""Small operations on parameter pytrees and keys that every layer of the library shares.

A zoo is a pytree whose leaves have the model on axis 0; these helpers take one model out,
stack models back together, flatten Flax params to `/`-joined paths, and derive one key
per model or pair.
"""
from __future__ import annotations

from typing import Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lmc_jax import host_arrays


def take(tree, k):
  """Model `k` of a stacked pytree (every leaf indexed at `k` on axis 0); `k` may also be
  an index array, giving the stack of those models. Leaves in host memory are indexed by
  numpy (`host_arrays.index`: nothing compiled per leaf shape)."""
  return jax.tree_util.tree_map(lambda a: host_arrays.index(a, k), tree)


def to_numpy(tree):
  """Every leaf as a numpy array on the host."""
  return jax.tree_util.tree_map(np.asarray, tree)


def stack(trees: Sequence, axis_fn=np.stack):
  """Stacks pytrees of one structure on a new axis 0 (numpy by default; pass
  `host_arrays.stack` or `jnp.stack` to stay on the device, or `np.concatenate` to join
  stacks)."""
  return jax.tree_util.tree_map(lambda *xs: axis_fn(xs), *trees)


def fold_in_each(key, ids):
  """`fold_in(key, i)` for every i in `ids`: a key array `(len(ids),)`, one per model or
  pair, the same whichever other ids are present."""
  return jax.vmap(jax.random.fold_in, (None, 0))(key, np.asarray(ids, np.uint32))


def flatten(params) -> Dict[str, jax.Array]:
  """Nested Flax params -> {'Dense_0/kernel': array, ...}."""
  return traverse_util.flatten_dict(params, sep="/")


def unflatten(flat: Dict[str, jax.Array]):
  """{'Dense_0/kernel': array, ...} -> nested Flax params."""
  return traverse_util.unflatten_dict(flat, sep="/")


def map_in_chunks(f, xs, chunk: int):
  """`f` over axis 0 of the pytree `xs` inside one computation, `chunk` items at a time:
  chunks of `chunk` items vmapped, one after another (`lax.scan`), then the rest. With
  `chunk=1`, and for a rest of one item, `f` runs on single items with no vmap at all:
  XLA's CPU backend runs a vmap of size 1 far slower than `f` itself (its matrix products
  keep the batch axis; 1.9x slower at MNIST 3x512, BUILD_NOTES.md). Returns `f`'s
  outputs stacked on axis 0, as `jax.vmap(f)(xs)` would.
  """
  tree_map = jax.tree_util.tree_map
  n = jax.tree_util.tree_leaves(xs)[0].shape[0]
  chunk = max(1, min(int(chunk), n))
  if chunk == 1:
    return jax.lax.scan(lambda c, x: (c, f(x)), (), xs)[1]
  whole = n // chunk * chunk
  chunks = tree_map(lambda a: a[:whole].reshape(n // chunk, chunk, *a.shape[1:]), xs)
  ys = jax.lax.scan(lambda c, x: (c, jax.vmap(f)(x)), (), chunks)[1]
  ys = tree_map(lambda a: a.reshape(whole, *a.shape[2:]), ys)
  if whole == n:
    return ys
  rest = tree_map(lambda a: a[whole:], xs)
  rest_ys = (tree_map(lambda a: a[None], f(tree_map(lambda a: a[0], rest))) if n - whole == 1
             else jax.vmap(f)(rest))
  return tree_map(lambda a, b: jnp.concatenate([a, b]), ys, rest_ys)
