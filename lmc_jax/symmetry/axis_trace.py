"""The union-find of `derive_spec`: every array axis of a traced computation is a node, and
the rules of `symmetry.primitive_rules` tie the nodes each primitive maps one to one (an
elementwise op ties the same axis of all its operands and its output, a contraction ties
the two contracted axes, a transpose maps axes to axes, ...). An axis that is the
row-major product of others (a flatten's output, a split's input) is a compound, each
factor a node of its own; an axis that is the concatenation of others (a concatenate's
output, a split's input) is a sum, each block a node of its own. Marks record what can
not move (inputs, outputs, spatial axes of convolutions, axes along which a constant
varies, axes a lookup indexes), the barriers (ops that treat an axis other than one to
one: a slice, an argmax, a primitive unknown here) and what each barrier makes from what.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, NamedTuple, Tuple

from jax.extend import core as jcore

SUB_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


class _Val(NamedTuple):
  """A jaxpr variable in one call of its jaxpr: a jitted function traced once and called
  twice shares its variables between the calls, which must not tie their axes."""
  scope: int
  var: object

  @property
  def aval(self):
    return self.var.aval


Node = Tuple[_Val, int]  # (variable in a call, axis)


class AxisTrace:
  """Union-find over the axes of one traced computation, with the marks of `derive_spec`."""

  def __init__(self):
    self.parent: Dict[Node, Node] = {}
    self.fixed: Dict[Node, str] = {}  # node -> why it can not move (genuine)
    self.soft_fixed: set = set()  # outputs of barriers
    self.barriers: List[Tuple[Node, str]] = []  # (input node, primitive)
    self.first_seen: Dict[Node, int] = {}
    # Axes that are a product of others (a flatten's output, a split reshape's input):
    # (node, factor sizes, one sub-node per factor, tied to the factor's axis).
    self.compounds: List[Tuple[Node, Tuple[int, ...], List[tuple]]] = []
    # Axes that are a concatenation of others (pieces of a concatenate or a split), as
    # `compounds`: (node, block sizes, one sub-node per block).
    self.sums: List[Tuple[Node, Tuple[int, ...], List[tuple]]] = []
    # What a barrier maps to what: (axes read, axes made, whether every element read lands
    # at its own place in what is made). Axes made from axes that carry no units (token
    # positions, a kernel's taps) carry none either; where the map keeps every element
    # (a flip, a padding, a concatenation), axes made that carry none say the same of the
    # axes read.
    self.passes: List[Tuple[List[Node], List[Node], bool]] = []
    self.counter = itertools.count()
    self.scopes = itertools.count(1)
    # What the sign analysis (`symmetry.signs`) reads again once the classes are known:
    # every primitive applied (name, inputs, outputs, params), the values a call of a
    # sub-jaxpr makes equal, and the constants.
    self.eqns: List[tuple] = []
    self.links: List[Tuple[_Val, _Val]] = []
    self.consts: List[_Val] = []
    self.data: set = set()  # values that depend on the model's inputs

  def node(self, var, axis: int) -> Node:
    n = (var, axis)
    if n not in self.parent:
      self.parent[n] = n
    return n

  def find(self, n: Node) -> Node:
    root = n
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[n] != root:
      self.parent[n], n = root, self.parent[n]
    return root

  def tie(self, a, ia: int, b, ib: int):
    """Axis `ia` of `a` and axis `ib` of `b` carry the same units (sizes > 1 only)."""
    if not _is_var(a) or not _is_var(b) or size_of(a, ia) != size_of(b, ib) or size_of(a, ia) <= 1:
      return
    ra, rb = self.find(self.node(a, ia)), self.find(self.node(b, ib))
    if ra != rb:
      self.parent[rb] = ra

  def union(self, a, b):
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[rb] = ra

  def compound(self, var, axis: int, parts):
    """Axis `axis` of `var` is the row-major product of the axes `parts` [(var, axis)]:
    each factor moves with its own axis, the product axis as a whole with nothing."""
    self.product(var, axis, [size_of(v, a) for v, a in parts], [[(v, a)] for v, a in parts])

  def product(self, var, axis: int, sizes, ties, fixed: str = ""):
    """Axis `axis` of `var` is the row-major product of factors of `sizes`, factor m moving
    with the axes `ties[m]` [(var, axis)], or, where `ties[m]` is empty and `fixed` says
    why, with nothing (which piece of a split or a concatenation)."""
    node = self.node(var, axis)
    subs = []
    for m, nodes in enumerate(ties):
      sub = ("factor", node, m)
      self.parent.setdefault(sub, sub)
      for v, a in nodes:
        if _is_var(v):
          self.union(self.node(v, a), sub)
      if not nodes and fixed:
        self.fixed.setdefault(sub, fixed)
      subs.append(sub)
    self.compounds.append((node, tuple(sizes), subs))
    self.soft_fixed.add(node)
    return subs

  def blocks(self, var, axis: int, parts):
    """Axis `axis` of `var` is the concatenation of the axes `parts` [(var, axis)]: each
    block moves with its own part, the axis as a whole with nothing."""
    node = self.node(var, axis)
    subs = []
    for m, (v, a) in enumerate(parts):
      sub = ("block", node, m)
      self.parent.setdefault(sub, sub)
      if size_of(v, a) > 1:
        self.union(self.node(v, a), sub)
      subs.append(sub)
    self.sums.append((node, tuple(size_of(v, a) for v, a in parts), subs))
    self.soft_fixed.add(node)

  def fix(self, var, axis: int, why: str):
    if _is_var(var) and size_of(var, axis) > 1:
      self.fixed.setdefault(self.node(var, axis), why)

  def fix_all(self, var, why: str):
    for axis in range(rank(var)):
      self.fix(var, axis, why)

  def barrier(self, var, axis: int, primitive: str):
    if _is_var(var) and size_of(var, axis) > 1:
      self.barriers.append((self.node(var, axis), primitive))

  def barrier_out(self, var, axis: int):
    if _is_var(var) and size_of(var, axis) > 1:
      self.soft_fixed.add(self.node(var, axis))

  def link(self, src, dst, axes=None):
    """`dst` is `src` (a call's argument and its parameter, a result and the call's output;
    `axes` pairs src's axes with dst's where not all are the same)."""
    self.links.append((dst, src))
    if _is_var(src) and src in self.data and _is_var(dst):
      self.data.add(dst)
    for a, b in axes if axes is not None else ((a, a) for a in range(rank(dst))):
      self.tie(src, a, dst, b)

  def passes_through(self, reads, makes, keeps_all: bool = False):
    """A barrier reads the axes `reads` [(var, axis)] to make `makes` (see `passes`)."""
    node = lambda v, a: self.node(v, a) if _is_var(v) and size_of(v, a) > 1 else None
    reads = [n for n in (node(v, a) for v, a in reads) if n is not None]
    makes = [n for n in (node(v, a) for v, a in makes) if n is not None]
    if makes:
      self.passes.append((reads, makes, keeps_all))

  def seen(self, var):
    if _is_var(var):
      step = next(self.counter)
      for axis in range(rank(var)):
        self.first_seen.setdefault(self.node(var, axis), step)


def _is_var(v) -> bool:
  return isinstance(v, _Val)


def scoped(scope: int, vs) -> list:
  return [_Val(scope, v) if isinstance(v, jcore.Var) else v for v in vs]


def _shape(v) -> tuple:
  return tuple(getattr(v.aval, "shape", ()))


def rank(v) -> int:
  return len(_shape(v))


def size_of(v, axis: int) -> int:
  return _shape(v)[axis]


def sub_jaxpr(eqn):
  for name in SUB_JAXPR_PARAMS:
    j = eqn.params.get(name)
    if isinstance(j, jcore.ClosedJaxpr):
      return j.jaxpr, j.consts
    if isinstance(j, jcore.Jaxpr):
      return j, ()
  return None, ()
