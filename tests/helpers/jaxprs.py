"""Reading a traced computation: the equations of a jaxpr and of every jaxpr inside it."""
import jax
from jax.extend.core import jaxprs_in_params


def equations(jaxpr):
  """Every equation of `jaxpr` (a Jaxpr or ClosedJaxpr) and of the jaxprs nested in it
  (scans, jitted calls, custom VJPs), depth first."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jaxprs_in_params(eqn.params):
      yield from equations(sub)


def matrix_products(fn, *args):
  """Every dot_general of matrices (both operands 2-d or more) that `fn(*args)` traces."""
  return [eqn for eqn in equations(jax.make_jaxpr(fn)(*args))
          if eqn.primitive.name == "dot_general" and min(v.aval.ndim for v in eqn.invars) >= 2]
