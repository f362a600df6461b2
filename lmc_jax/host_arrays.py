"""Exact rearrangements of concrete arrays done by numpy where the array is in host memory.

An eager `jax.numpy` operation compiles a program for every new shape and dtype it meets
(about 20 ms of a CPU's time each), and a library that slices, permutes and stacks the leaves
of many different networks meets many. An array that already lives in host memory (a numpy
array, or a concrete jax array on one CPU device) can be indexed, reshaped and stacked by
numpy bit for bit with nothing compiled. `host_view` says whether an array is one of those
and gives its numpy view; `like` gives a numpy result back as the kind of array that came in.
Tracers, PRNG keys, weakly typed scalars and arrays on an accelerator or over several devices
get `None` from `host_view`, and the callers use jax.numpy for them as before. `to_device`
is `jnp.asarray` for arrays that come from numpy, without the copy it compiles per shape.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def host_view(x) -> Optional[np.ndarray]:
  """`x` as a numpy array, without a copy, where it lives in host memory: a numpy array, or a
  concrete (not traced), strongly typed, non-key jax array on one CPU device; else None."""
  if isinstance(x, np.ndarray):
    return x
  if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
    return None
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) or x.weak_type or x.is_deleted():
    return None
  devices = x.sharding.device_set
  if len(devices) != 1 or next(iter(devices)).platform != "cpu":
    return None
  return np.asarray(x)


def like(result: np.ndarray, x):
  """The numpy array `result` as the kind of array `x` is: numpy for numpy, else a jax array
  on `x`'s one device (committed to it only where `x` is), with nothing compiled. A view is
  copied first: on a CPU, `device_put` may keep the numpy memory it is given, and a view's
  is another array's (a model taken from a zoo would keep the whole zoo's buffer alive)."""
  if isinstance(x, np.ndarray):
    return result
  if result.base is not None:
    result = result.copy()
  return jax.device_put(result, next(iter(x.sharding.device_set)) if x.committed else None)


def to_device(x, dtype=None):
  """`jnp.asarray(x, dtype)`, with nothing compiled where `x` is a numpy array: numpy casts it
  to the canonical dtype (the cast `jnp.asarray` does on the host too) into memory of its
  own, and `device_put` places it, uncommitted, on the default device. Anything else (jax
  arrays, tracers, python scalars and lists) goes to `jnp.asarray` as given."""
  if not isinstance(x, np.ndarray):
    return jnp.asarray(x, dtype)
  target = jax.dtypes.canonicalize_dtype(x.dtype if dtype is None else dtype)
  return jax.device_put(x.astype(target))  # astype copies: later writes to `x` are not seen


def index(x, k):
  """`x[k]` (`k` an int or an index array): numpy where `x` is a jax array and `x` and `k`
  are in host memory, else `x[k]` as given."""
  view = host_view(x) if isinstance(x, jax.Array) else None
  if view is None:
    return x[k]
  if isinstance(k, jax.Array):
    k_view = host_view(k)
    if k_view is None:
      return x[k]
    k = k_view
  return like(view[k], x)


def reshape(x, shape):
  """`x.reshape(shape)`: numpy where `x` is in host memory (a numpy array stays one), else
  jax.numpy's."""
  view = host_view(x)
  if view is None:
    return x.reshape(shape)
  return like(view.reshape(shape), x)


def moveaxis(x, source, destination):
  """`moveaxis(x, source, destination)`: numpy where `x` is in host memory (a numpy array
  stays one), else jax.numpy's."""
  view = host_view(x)
  if view is None:
    return jnp.moveaxis(x, source, destination)
  return like(np.moveaxis(view, source, destination), x)


def stack(xs: Sequence):
  """`jnp.stack(xs)`: numpy where the arrays of `xs` are jax arrays of one dtype in host
  memory (the result placed as the first one is), else jax.numpy."""
  views = [host_view(x) if isinstance(x, jax.Array) else None for x in xs]
  if not views or any(v is None or v.dtype != views[0].dtype for v in views):
    return jnp.stack(xs)
  return like(np.stack(views), xs[0])
