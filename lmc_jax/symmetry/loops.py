"""How `derive_spec` follows loops and branches (`lax.scan`, hence `nn.scan` and `nn.RNN`;
`lax.while_loop`, `lax.cond` and `lax.switch`).

A loop's body is one jaxpr run many times; the same units flow through every step. So the
body is visited once, in a scope of its own, and linked to the loop: each constant the
body reads (a cell's weights) is the loop's operand, axis for axis; the carry the body
takes, the carry it gives back, the loop's initial carry and its final carry are one value
(so a recurrent cell's hidden units move with the carry, and with the weights that read and
make it); each slice of a scanned operand is that operand without its leading axis, and
each scanned result likewise. The axis a scan steps along keeps its order (the carry reads
the steps one after another): along weights (stacked layers, `nn.scan` with
`variable_axes`) it is fixed, a layer index, so each permutation is shared by the layers;
along values of the data it is a barrier, which an input's time axis passes (it carries
no units) and hidden units stepped along do not. The branches of a `cond` are linked to
its operands and results alike, every branch to the same ones.
"""
from __future__ import annotations

from lmc_jax.symmetry.axis_trace import AxisTrace, _is_var, rank, scoped

STEPS = "the axis a scan steps along"


def visit_loop(t: AxisTrace, prim: str, ins, outs, p, visit_jaxpr) -> bool:
  """Links a loop or branch's body to `ins` and `outs`; False for a form not known here
  (then the caller makes it a barrier)."""
  if prim == "scan":
    _visit_scan(t, ins, outs, p, visit_jaxpr)
  elif prim == "while":
    _visit_while(t, ins, outs, p, visit_jaxpr)
  elif prim == "cond":
    for branch in p["branches"]:
      _visit_body(t, branch, ins[1:], outs, visit_jaxpr)
  else:
    return False
  return True


def _visit_body(t: AxisTrace, closed, ins, outs, visit_jaxpr, tainted=()):
  """Visits `closed` (a ClosedJaxpr) in a new scope, its parameters linked to `ins` and
  its results to `outs` (None where the caller links them itself), the parameters at
  `tainted` taken as depending on the model's inputs; returns the scoped parameters and
  results."""
  scope = next(t.scopes)
  params, results = scoped(scope, closed.jaxpr.invars), scoped(scope, closed.jaxpr.outvars)
  for k, (outer, inner) in enumerate(zip(ins, params)):
    if outer is not None:
      t.link(outer, inner)
    if k in tainted:
      t.data.add(inner)
  visit_jaxpr(t, closed.jaxpr, closed.consts, scope)
  for inner, outer in zip(results, outs):
    if outer is not None:
      t.link(inner, outer)
  return params, results


def _reads_data(t: AxisTrace, ins) -> bool:
  """Whether a loop reads anything that depends on the inputs: then so may its carry."""
  return any(_is_var(v) and v in t.data for v in ins)


def _visit_scan(t: AxisTrace, ins, outs, p, visit_jaxpr):
  n_consts, n_carry = p["num_consts"], p["num_carry"]
  xs = ins[n_consts + n_carry:]
  carry = range(n_consts, n_consts + n_carry) if _reads_data(t, ins) else ()
  params, results = _visit_body(t, p["jaxpr"], ins[:n_consts + n_carry] + [None] * len(xs),
                                outs[:n_carry] + [None] * (len(outs) - n_carry), visit_jaxpr,
                                carry)
  for k in range(n_carry):  # the carry a step gives back is the next step's
    t.link(results[k], params[n_consts + k])
  ys = outs[n_carry:]
  for x, inner in zip(xs, params[n_consts + n_carry:]):
    if _is_var(x) and x in t.data:  # time steps, or (refused) hidden units stepped along
      t.barrier(x, 0, "scan")
    else:  # stacked layers' weights: a layer index
      t.fix(x, 0, STEPS)
    t.link(x, inner, [(a + 1, a) for a in range(rank(inner))])
  for inner, y in zip(results[n_carry:], ys):
    t.barrier_out(y, 0)
    t.link(inner, y, [(a, a + 1) for a in range(rank(inner))])
  t.passes_through([(x, 0) for x in xs], [(y, 0) for y in ys])


def _visit_while(t: AxisTrace, ins, outs, p, visit_jaxpr):
  n_cond, n_body = p["cond_nconsts"], p["body_nconsts"]
  carry = ins[n_cond + n_body:]
  n = len(carry)
  tainted = range(n_body, n_body + n) if _reads_data(t, ins) else ()
  params, results = _visit_body(t, p["body_jaxpr"], ins[n_cond:], list(outs), visit_jaxpr,
                                tainted)
  for k in range(n):  # the carry a step gives back is the next step's
    t.link(results[k], params[n_body + k])
  _visit_body(t, p["cond_jaxpr"], ins[:n_cond] + list(carry), [None], visit_jaxpr,
              range(n_cond, n_cond + n) if tainted else ())
