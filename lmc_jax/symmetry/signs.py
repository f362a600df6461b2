"""Which permutation groups may also flip the signs of their units, read off the same jaxpr.

Flip unit i of a group: every value that carries the group's units is either negated at
unit i (odd) or unchanged (even). Call the parity of value v for the group `P(v)`, one
bit; a value that does not carry the group's units is unchanged (0), as are the model's
inputs, outputs and constants. Each primitive relates the parities of its operands and
results by one of a few rules, all linear over GF(2):

- linear and odd maps (add, sub, neg, tanh, sin, reshape, broadcast, sums over other
  axes, ...): operands and results share one parity (a literal 0 is neutral); pieces of
  a concatenation or split that do not carry the group's units take no part;
- products (mul, div; dot_general and conv over other axes): `P(out) = P(a) xor P(b)`;
  a contraction over the group's axis makes both sides equal, the result unchanged;
- even maps (abs, square, cos): the result is unchanged;
- everything else (max, hence relu; exp, rsqrt, comparisons, a sum over the group's axis
  as LayerNorm's mean, ...): operands and results unchanged.

Every solution of these equations is a symmetry: negating, per unit, the variable axes of
parity 1 leaves the outputs unchanged. A group may flip where a solution negates some
variable; where several independent ones exist (a BatchNorm between two layers) the
spec records the one that negates the most variables. A ReLU net has none; a tanh net
flips each hidden unit's incoming and outgoing weights; LayerNorm before tanh moves the
flip onto its scale and bias.
"""
from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Tuple

from jax.extend import core as jcore

from lmc_jax.symmetry.axis_trace import AxisTrace

SAME = frozenset("""
add add_any sub neg tanh sin sinh tan asin asinh atan atanh erf erf_inv sign cbrt
convert_element_type copy copy_p reduce_precision stop_gradient real imag conj
broadcast_in_dim reshape squeeze expand_dims transpose rev slice dynamic_slice concatenate
split gather cumsum reduce_window_sum reduce_sum select_n pad
""".split())
PRODUCTS = frozenset(("mul", "div", "dot_general", "conv_general_dilated"))
EVEN = frozenset(("abs", "square", "cos", "cosh"))
# Operands that are indices or predicates, not data: (primitive, operand positions).
NOT_DATA = {"select_n": (0,), "dynamic_slice": None, "gather": None}
MAX_ENUMERATED = 12  # independent solutions enumerated to pick the largest; more: a basis's


def _zero_literal(v) -> bool:
  if not isinstance(v, jcore.Literal):
    return False
  try:
    return float(v.val) == 0.0
  except (TypeError, ValueError):
    return False


class _Rows:
  """Equations over the parity bits of one group: each row a bit mask whose XOR is 0."""

  def __init__(self, bit: Callable):
    self.bit, self.rows = bit, []

  def zero(self, *vs):
    for v in vs:
      if self.bit(v):
        self.rows.append(self.bit(v))

  def equal(self, vs):
    vs = [v for v in vs if not _zero_literal(v)]
    for v in vs[1:]:
      row = self.bit(vs[0]) ^ self.bit(v)
      if row:
        self.rows.append(row)

  def xor(self, out, a, b):
    row = self.bit(out) ^ self.bit(a) ^ self.bit(b)
    if row:
      self.rows.append(row)


def _equations(rows: _Rows, prim: str, ins, outs, p, carries: Callable[[object, int], bool]):
  """Adds the rows of one primitive; `carries(v, axis)` says whether the group's units lie
  on that axis of v."""
  on = lambda v, axes: any(carries(v, a) for a in axes)
  if prim in SAME:
    skip = NOT_DATA.get(prim, ())
    skip = range(1, len(ins)) if skip is None else skip
    rows.zero(*[v for k, v in enumerate(ins) if k in skip])
    data = [v for k, v in enumerate(ins) if k not in skip]
    if prim == "reduce_sum" and on(ins[0], p["axes"]):
      rows.zero(*ins, *outs)  # a sum over the units: LayerNorm's mean
      return
    if prim in ("concatenate", "split"):  # blocks without the units do not flip with them
      rows.equal([v for v in data + list(outs) if rows.bit(v)])
      return
    rows.equal(data + list(outs))
  elif prim in ("mul", "div"):
    rows.xor(outs[0], ins[0], ins[1])
  elif prim == "dot_general":
    (lc, _), _ = p["dimension_numbers"]
    _contraction(rows, ins, outs[0], on(ins[0], lc))
  elif prim == "conv_general_dilated":
    if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
      rows.zero(*ins, *outs)
    else:
      _contraction(rows, ins, outs[0], on(ins[0], [p["dimension_numbers"].lhs_spec[1]]))
  elif prim == "integer_pow" and p["y"] % 2:
    rows.equal([ins[0], outs[0]])
  elif prim in EVEN or prim == "integer_pow":
    rows.zero(*outs)
  else:
    rows.zero(*ins, *outs)


def _contraction(rows: _Rows, ins, out, contracted: bool):
  if contracted:  # sum_i (s_i a_i)(s_i b_i) is unchanged when both sides flip alike
    rows.equal(list(ins[:2]))
    rows.zero(out)
  else:
    rows.xor(out, ins[0], ins[1])


def _null_space(rows: List[int], n: int) -> List[int]:
  """A basis of the bit vectors x (n bits) with `popcount(row & x)` even for every row."""
  pivots: Dict[int, int] = {}
  for r in rows:
    for pb, pr in pivots.items():
      if r >> pb & 1:
        r ^= pr
    if r:
      pb = r.bit_length() - 1
      for k in pivots:
        if pivots[k] >> pb & 1:
          pivots[k] ^= r
      pivots[pb] = r
  basis = []
  for f in (b for b in range(n) if b not in pivots):
    v = 1 << f
    for pb, pr in pivots.items():
      if pr >> f & 1:
        v |= 1 << pb
    basis.append(v)
  return basis


def _largest(vectors: List[int], mask: int) -> int:
  """The combination of `vectors`, restricted to `mask`, with the most bits set."""
  span = []
  for v in vectors:  # an independent set spanning the restricted vectors
    v &= mask
    for s in span:  # highest bits distinct and falling: clears each one v shares
      v = min(v, v ^ s)
    if v:
      span = sorted(span + [v], reverse=True)
  if len(span) > MAX_ENUMERATED:
    return max(span, key=lambda v: bin(v).count("1"))
  best = 0
  for picks in itertools.product((0, 1), repeat=len(span)):
    v = 0
    for s, k in zip(span, picks):
      v ^= s if k else 0
    best = max(best, v, key=lambda u: bin(u).count("1"))
  return best


def sign_flips(t: AxisTrace, groups: Dict[object, str], carried: Callable, variables,
               paths, outputs, mutated: Dict[int, int], axis_of: Callable[[str, str], int]
               ) -> Dict[str, Tuple[Tuple[str, int], ...]]:
  """`{perm name: ((path, axis), ...)}` of the groups that may flip signs.

  `groups` maps a class root to its permutation's name; `carried(v)` lists, per axis of
  value v, the class roots on it (a flattened axis: several); `variables` are the
  variables' values (paths alike), `outputs` the model's, `mutated` output index ->
  variable index for the collections `mutable=` returns; `axis_of(path, name)` lists the
  (spec path, axis of its view) pairs of leaf `path` that permutation `name` acts on
  (blocks' paths where the leaf is held as blocks)."""
  values = {v for e in t.eqns for v in itertools.chain(e[1], e[2]) if _is_val(v)}
  values |= {v for pair in t.links for v in pair if _is_val(v)} | set(variables)
  on_axes = {v: carried(v) for v in values}
  out = {}
  for root, name in groups.items():
    holders = [v for v in values if any(root in rs for rs in on_axes[v])]
    if any(sum(rs.count(root) for rs in on_axes[v]) > 1 for v in holders):
      continue  # a value with the units on two axes: not followed
    index = {v: k for k, v in enumerate(holders)}
    rows = _Rows(lambda v: 1 << index[v] if _is_val(v) and v in index else 0)
    carries = lambda v, a: _is_val(v) and v in index and root in on_axes[v][a]
    for prim, ins, outs, p in t.eqns:
      if any(v in index for v in itertools.chain(ins, outs) if _is_val(v)):
        _equations(rows, prim, ins, outs, p, carries)
    for a, b in t.links:
      rows.equal([a, b])
    rows.zero(*t.consts)
    for k, v in enumerate(outputs):
      rows.equal([v, variables[mutated[k]]]) if k in mutated else rows.zero(v)
    mask = sum(1 << index[v] for v in variables if v in index)
    best = _largest(_null_space(rows.rows, len(holders)), mask)
    flips = [pair for path, v in zip(paths, variables)
             if v in index and best >> index[v] & 1 for pair in axis_of(path, name)]
    if flips:
      out[name] = tuple(sorted(flips))
  return out


def _is_val(v) -> bool:
  return not isinstance(v, jcore.Literal) and hasattr(v, "scope")

