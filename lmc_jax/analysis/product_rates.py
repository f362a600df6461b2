"""How fast a device runs the matrix products of one computation, each at its own shape.

A floor from the device's large-square matmul rate (`benchmarks.device_rates`) assumes
every product runs at that rate. Products of a training step are smaller and some take an
operand transposed (a weight gradient contracts the batch axis); on a CPU they run well
below the square rate, and no schedule of the step can beat its products. So
`product_seconds` times every `dot_general` of a traced function alone, at its shapes,
dtypes and contraction, and sums them: the time the step's products take by themselves.
"""
from __future__ import annotations

import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lmc_jax.nn import native_conv, random_draws


class Product(NamedTuple):
  lhs: tuple  # shape
  rhs: tuple
  lhs_dtype: str
  rhs_dtype: str
  dimension_numbers: tuple
  out_dtype: str

  @property
  def flops(self) -> int:
    (contract, _), (batch, _) = self.dimension_numbers
    free = [d for i, d in enumerate(self.lhs) if i not in contract and i not in batch]
    rhs_contract, rhs_batch = self.dimension_numbers[0][1], self.dimension_numbers[1][1]
    rhs_free = [d for i, d in enumerate(self.rhs) if i not in rhs_contract and i not in rhs_batch]
    return 2 * int(np.prod([self.lhs[c] for c in contract]) * np.prod([self.lhs[b] for b in batch])
                   * np.prod(free) * np.prod(rhs_free))


def equations(jaxpr):
  """Every equation of `jaxpr` (a Jaxpr or ClosedJaxpr) and of the jaxprs nested in its
  equations (scans, jitted calls, custom derivatives), depth first."""
  for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from equations(inner)


def _live(closed):
  """`closed`'s jaxpr without the equations no output needs (what XLA drops too: e.g. the
  input gradient a custom VJP computes for data that is not differentiated)."""
  try:
    from jax._src.interpreters import partial_eval as pe
    return pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))[0]
  except Exception:  # noqa: BLE001  (a JAX without this internal: count every product)
    return closed.jaxpr


def matrix_products(fn, *args) -> list:
  """Every product of floating-point matrices that `fn(*args)` traces and needs (nested
  jaxprs included), as `Product`s, once per time it runs (one inside a scan counts once,
  not once per step)."""
  return _products(jax.make_jaxpr(fn)(*args))


def _products(closed) -> list:
  found = []
  for eqn in equations(_live(closed)):
    if eqn.primitive.name != "dot_general":
      continue
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    if min(lhs.ndim, rhs.ndim) < 2 or not jnp.issubdtype(lhs.dtype, jnp.floating):
      continue
    dn = tuple(tuple(tuple(int(d) for d in side) for side in part)
               for part in eqn.params["dimension_numbers"])
    found.append(Product(tuple(lhs.shape), tuple(rhs.shape), lhs.dtype.name, rhs.dtype.name,
                         dn, eqn.outvars[0].aval.dtype.name))
  return found


def _time_product(p: Product, repeats: int = 8, trials: int = 3) -> float:
  """Seconds of one product `p`, run `repeats` times on fresh operands inside one jitted
  scan (so none is hoisted out of the loop), best of `trials` calls."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  lhs = random_draws.normal(key_a, (repeats,) + p.lhs).astype(p.lhs_dtype)  # a compile per
  rhs = random_draws.normal(key_b, (repeats,) + p.rhs).astype(p.rhs_dtype)  # size class

  def body(total, operands):
    out = lax.dot_general(operands[0], operands[1], p.dimension_numbers,
                          preferred_element_type=jnp.dtype(p.out_dtype))
    return total + out.reshape(-1)[0].astype(jnp.float32), None

  run = jax.jit(lambda a, b: lax.scan(body, jnp.float32(0), (a, b))[0])
  run(lhs, rhs).block_until_ready()
  best = float("inf")
  for _ in range(trials):
    t = time.perf_counter()
    run(lhs, rhs).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return best / repeats


class ProductTimes(NamedTuple):
  """A function's matrix products, each timed alone at its own shape."""
  seconds: float  # their sum, per call of the function
  flops: int  # per call
  flops_per_s: float  # their combined rate


def product_seconds(fn, *args) -> Optional[ProductTimes]:
  """The matrix products of `fn(*args)`, each timed alone at its own shape; None where `fn`
  also convolves (convolutions are not timed)."""
  closed = jax.make_jaxpr(fn)(*args)
  if any(eqn.primitive.name == "conv_general_dilated"
         or native_conv.calls_forward(eqn.primitive.name, eqn.params)
         for eqn in equations(closed)):
    return None  # convolutions are not timed here, so the sum would leave them out
  products = _products(closed)
  timed = {}
  for p in products:
    if p not in timed:
      timed[p] = _time_product(p)
  seconds = sum(timed[p] for p in products)
  flops = sum(p.flops for p in products)
  return ProductTimes(seconds, flops, flops / seconds if seconds else float("nan"))
