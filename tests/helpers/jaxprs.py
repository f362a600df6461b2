"""Reading a traced computation: the matrix products of a function's jaxpr."""
import jax

from lmc_jax.analysis.product_rates import equations


def matrix_products(fn, *args):
  """Every dot_general of matrices (both operands 2-d or more) that `fn(*args)` traces,
  nested jaxprs included, as jaxpr equations."""
  return [eqn for eqn in equations(jax.make_jaxpr(fn)(*args))
          if eqn.primitive.name == "dot_general" and min(v.aval.ndim for v in eqn.invars) >= 2]
