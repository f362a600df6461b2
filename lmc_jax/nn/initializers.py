"""The initializers of lmc_jax's networks, drawing through `random_draws`.

Flax's (jax.nn.initializers') variance-scaling family and the normal initializer, computed
the same way, so the same numbers for the same key, shape and dtype
(tests/test_random_draws.py), but each draw compiled once per size class (`random_draws`)
instead of once per shape: initialising a ResNet-20 asks for a dozen kernel shapes, whose
draws took most of a zoo's start-up compile. Plus PyTorch's default `nn.Linear` /
`nn.Conv2d` uniform.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.nn import random_draws

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# The standard deviation of a standard normal truncated to (-2, 2).
TRUNCATED_STD = .87962566103423978


def _fans(shape, in_axis: int, out_axis: int):
  """(fan_in, fan_out) of a kernel `shape`, its receptive field the axes other than the
  input and output axes (jax.nn.initializers' rule)."""
  if len(shape) <= 1:
    raise ValueError(f"Can't compute input and output sizes of a {len(shape)}-dimensional "
                     "weights tensor. Must be at least 2D.")
  receptive = math.prod(shape) / shape[in_axis] / shape[out_axis]
  return shape[in_axis] * receptive, shape[out_axis] * receptive


def variance_scaling(scale: float, mode: str, distribution: str, in_axis: int = -2,
                     out_axis: int = -1, dtype=jnp.float32):
  """`jax.nn.initializers.variance_scaling` for real floating dtypes: samples of variance
  `scale / fan` (fan by `mode`), from a normal truncated at 2 standard deviations, a normal
  or a uniform distribution."""
  if mode not in MODES or distribution not in DISTRIBUTIONS:
    raise ValueError(f"variance_scaling takes mode in {MODES} and distribution in "
                     f"{DISTRIBUTIONS}; got {mode!r}, {distribution!r}")

  def init(key, shape, dtype=dtype):
    shape = tuple(shape)
    if not jnp.issubdtype(dtype, jnp.floating):
      return jax.nn.initializers.variance_scaling(scale, mode, distribution, in_axis,
                                                  out_axis)(key, shape, dtype)
    fan_in, fan_out = _fans(shape, in_axis, out_axis)
    denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = jnp.array(scale / denominator, dtype=dtype)
    if distribution == "truncated_normal":
      stddev = jnp.sqrt(variance) / jnp.array(TRUNCATED_STD, dtype)
      return random_draws.truncated_normal(key, -2, 2, shape, dtype) * stddev
    if distribution == "normal":
      return random_draws.normal(key, shape, dtype) * jnp.sqrt(variance)
    return random_draws.uniform(key, shape, dtype, -1) * jnp.sqrt(3 * variance)
  return init


def lecun_normal(in_axis: int = -2, out_axis: int = -1):
  """Flax's default kernel initializer (nn.Dense, nn.Conv, attention's projections)."""
  return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis)


def he_normal():
  return variance_scaling(2.0, "fan_in", "truncated_normal")


def he_uniform():
  return variance_scaling(2.0, "fan_in", "uniform")


def normal(stddev: float = 1e-2, dtype=jnp.float32):
  """`jax.nn.initializers.normal(stddev)`."""
  def init(key, shape, dtype=dtype):
    return random_draws.normal(key, shape, dtype) * jnp.array(stddev, dtype)
  return init


def torch_uniform(fan_in: int):
  """PyTorch's default for nn.Linear's and nn.Conv2d's weight and bias:
  U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return random_draws.uniform(key, shape, dtype, -bound, bound)
  return init
