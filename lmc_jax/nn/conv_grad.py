"""A convolution whose kernel gradient is one matrix product, for XLA's CPU backend.

`conv_general_dilated` is a drop-in for `jax.lax.conv_general_dilated` (what `flax.linen.Conv`
takes as its `conv_general_dilated` attribute). Forward, and the gradient with respect to
the input, are lax's own. The gradient with respect to the kernel, which JAX writes as a
convolution whose window is the whole image and which XLA's CPU backend runs several times
slower than the forward convolution (BUILD_NOTES.md), is computed instead as patches times
the output gradient: `dk[(i, j, c), o] = sum_{n, y, x} x_pad[n, s*y + i, s*x + j, c] *
g[n, y, x, o]`, i.e. `(kh*kw*C, N*OH*OW) @ (N*OH*OW, O)`.

Only the plain case takes that path: NHWC inputs, HWIO kernels, explicit padding, no
dilation, no feature or batch groups, float32 or wider. Anything else calls lax's
convolution unchanged, so every convolution stays correct.
"""
from __future__ import annotations

import functools
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

PLAIN_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _lax_conv(x, k, strides, padding):
  return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=PLAIN_DIMENSIONS)


def _patches(x, kernel_hw: Tuple[int, int], strides, padding, out_hw):
  """`(N*OH*OW, kh*kw*C)`: for each output pixel, the input window it reads, in (i, j, c)
  order (the order of an HWIO kernel's first three axes)."""
  (kh, kw), (sh, sw), (oh, ow) = kernel_hw, strides, out_hw
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  taps = [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (oh - 1) + 1,
                                       j + sw * (ow - 1) + 1, xp.shape[3]), (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(taps, axis=-1).reshape(-1, kh * kw * x.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, k, strides, padding):
  return _lax_conv(x, k, strides, padding)


def _conv_fwd(x, k, strides, padding):
  return _lax_conv(x, k, strides, padding), (x, k)


def _conv_bwd(strides, padding, residuals, g):
  x, k = residuals
  _, input_vjp = jax.vjp(lambda x: _lax_conv(x, k, strides, padding), x)
  (dx,) = input_vjp(g)
  kh, kw, c, o = k.shape
  cols = _patches(x, (kh, kw), strides, padding, g.shape[1:3])
  dk = jnp.matmul(cols.T, g.reshape(-1, o), precision=lax.Precision.HIGHEST)
  return dx, dk.reshape(kh, kw, c, o).astype(k.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _plain(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
           feature_group_count, batch_group_count, preferred_element_type) -> bool:
  if lhs.ndim != 4 or rhs.ndim != 4 or dimension_numbers is None:
    return False
  plain = lax.conv_dimension_numbers(lhs.shape, rhs.shape, PLAIN_DIMENSIONS)
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != plain:
    return False
  return (True
          and not isinstance(padding, str)
          and all(d == 1 for d in (lhs_dilation or (1, 1)))
          and all(d == 1 for d in (rhs_dilation or (1, 1)))
          and feature_group_count == 1 and batch_group_count == 1
          and preferred_element_type is None
          and lhs.dtype == rhs.dtype and jnp.issubdtype(lhs.dtype, jnp.floating)
          and jnp.finfo(lhs.dtype).bits >= 32)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, with the kernel gradient of the plain case (see the module
  docstring) as one matrix product. Same arguments, same result: `(N, OH, OW, O)` for
  `lhs` `(N, H, W, C)` and `rhs` `(kh, kw, C, O)` in the plain case."""
  if _plain(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, preferred_element_type):
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    return _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type)
