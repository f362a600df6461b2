"""Mixed precision: matmul inputs in bfloat16, everything else in float32.

`--precision=bf16` is the usual recipe. Parameters, optimizer state, biases, LayerNorm
statistics, the loss and every accumulation stay float32; only the operands of each
matmul are rounded to bfloat16, and the matmul accumulates and returns float32
(`preferred_element_type`). Its gradients are matmuls of the same kind: the cotangent
and the other operand in bfloat16, the result (the weight gradient summed over the batch)
in float32. CPUs with AMX and GPUs run such matmuls several times faster than float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from lmc_jax.config import PRECISIONS
from lmc_jax.errors import LmcError


def check_precision(precision: str) -> str:
  if precision not in PRECISIONS:
    raise LmcError(f"Unknown --precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
  return precision


def _bf16(x):
  return x.astype(jnp.bfloat16)


def _dense_numbers(lhs_ndim: int):
  """Contraction of the last axis of `lhs` with the first of a 2-d kernel: nn.Dense's."""
  return (((lhs_ndim - 1,), (0,)), ((), ()))


@jax.custom_vjp
def bf16_dense(x, kernel):
  """`x @ kernel` `(..., d) x (d, w) -> (..., w)` float32, from bfloat16 operands."""
  return lax.dot_general(_bf16(x), _bf16(kernel), _dense_numbers(x.ndim),
                         preferred_element_type=jnp.float32)


def _bf16_dense_fwd(x, kernel):
  # Empty arrays carry the operands' dtypes (residuals must be arrays).
  return bf16_dense(x, kernel), (_bf16(x), _bf16(kernel), jnp.zeros((0,), x.dtype),
                                 jnp.zeros((0,), kernel.dtype))


def _bf16_dense_bwd(res, g):
  x16, k16, x_like, k_like = res
  x_dtype, k_dtype = x_like.dtype, k_like.dtype
  g16 = _bf16(g)
  lead = tuple(range(g.ndim - 1))
  dx = lax.dot_general(g16, k16, (((g.ndim - 1,), (1,)), ((), ())),
                       preferred_element_type=jnp.float32)
  dk = lax.dot_general(x16, g16, ((lead, lead), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x_dtype), dk.astype(k_dtype)


bf16_dense.defvjp(_bf16_dense_fwd, _bf16_dense_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """A drop-in `dot_general` for `nn.Dense(dot_general=...)`: bfloat16 operands, float32
  accumulation and result; other contractions than Dense's are cast the same way and left
  to JAX's own gradient."""
  del precision, preferred_element_type
  if rhs.ndim == 2 and tuple(map(tuple, dimension_numbers[0])) == ((lhs.ndim - 1,), (0,)) \
      and dimension_numbers[1] == ((), ()):
    return bf16_dense(lhs, rhs)
  return lax.dot_general(_bf16(lhs), _bf16(rhs), dimension_numbers,
                         preferred_element_type=jnp.float32)


def dot_general_for(precision: str):
  """The `dot_general` a Dense layer uses at `precision` (None: Flax's own, float32)."""
  return bf16_dot_general if check_precision(precision) == "bf16" else None


def einsum(precision: str, subscripts: str, a, b):
  """`jnp.einsum` of two operands at `precision`; float32 result either way."""
  if check_precision(precision) == "bf16":
    return jnp.einsum(subscripts, _bf16(a), _bf16(b), preferred_element_type=jnp.float32)
  return jnp.einsum(subscripts, a, b)
