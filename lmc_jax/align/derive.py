"""Permutation specs read off a Flax module's own computation.

`derive_spec(module, variables, *inputs)` traces `module.apply` to a jaxpr and works out
which axes of which variables must be permuted together. Every array axis of the trace is
a node; each primitive ties the nodes it maps one to one (an elementwise op ties the same
axis of all its operands and its output, a contraction ties the two contracted axes, a
transpose or reshape maps axes to axes, ...). Nodes tied together form a class; a class
holding an axis of an input or output of the model, a spatial axis of a convolution or an
axis along which a constant varies can not be permuted. Every other class that holds
axes of variables is one free hidden-unit permutation: permuting all of its axes at once
leaves the outputs unchanged, and two classes move independently.

An op that treats an axis other than one to one (a reshape that merges it with another,
a slice, an argmax, a loop, a primitive unknown here) is a barrier: if such an axis
belongs to a class that nothing else fixes, the symmetry can not be followed and the
derivation stops with one sentence naming the op and the variables; write that spec by
hand (`permutation_spec_from_axes`) and check it with `check_spec`.
"""
from __future__ import annotations

import itertools
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from lmc_jax.align.spec import (
  PermutationSpec,
  apply_permutation,
  perm_sizes,
  permutation_spec_from_axes,
  random_permutation,
  validate_spec,
)
from lmc_jax.errors import LmcError

# Primitives that act on each element on its own (operands broadcast on size-1 axes).
ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp conj convert_element_type
copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma imag
integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or pow
real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square stop_gradient sub tan
tanh xor
""".split())
# Reductions invariant under any order of the reduced elements.
REDUCTIONS = frozenset(("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and",
                        "reduce_or", "reduce_xor"))
# Reductions whose result depends on the order of the reduced axis.
ORDERED_REDUCTIONS = frozenset(("argmax", "argmin"))
CUMULATIVE = frozenset(("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"))
WINDOWED = frozenset(("reduce_window_sum", "reduce_window_max", "reduce_window_min",
                      "reduce_window"))
CONTROL_FLOW = frozenset(("scan", "while", "cond"))
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


class _Trace:
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
    self.counter = itertools.count()
    self.scopes = itertools.count(1)

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
    if not _is_var(a) or not _is_var(b) or _size(a, ia) != _size(b, ib) or _size(a, ia) <= 1:
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
    self.product(var, axis, [_size(v, a) for v, a in parts], [[(v, a)] for v, a in parts])

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

  def fix(self, var, axis: int, why: str):
    if _is_var(var) and _size(var, axis) > 1:
      self.fixed.setdefault(self.node(var, axis), why)

  def fix_all(self, var, why: str):
    for axis in range(_rank(var)):
      self.fix(var, axis, why)

  def barrier(self, var, axis: int, primitive: str):
    if _is_var(var) and _size(var, axis) > 1:
      self.barriers.append((self.node(var, axis), primitive))

  def barrier_out(self, var, axis: int):
    if _is_var(var) and _size(var, axis) > 1:
      self.soft_fixed.add(self.node(var, axis))

  def seen(self, var):
    if _is_var(var):
      step = next(self.counter)
      for axis in range(_rank(var)):
        self.first_seen.setdefault(self.node(var, axis), step)


def _is_var(v) -> bool:
  return isinstance(v, _Val)


def _scoped(scope: int, vs) -> list:
  return [_Val(scope, v) if isinstance(v, jcore.Var) else v for v in vs]


def _shape(v) -> tuple:
  return tuple(getattr(v.aval, "shape", ()))


def _rank(v) -> int:
  return len(_shape(v))


def _size(v, axis: int) -> int:
  return _shape(v)[axis]


def _sub_jaxpr(eqn):
  for name in SUB_JAXPR_PARAMS:
    j = eqn.params.get(name)
    if isinstance(j, jcore.ClosedJaxpr):
      return j.jaxpr, j.consts
    if isinstance(j, jcore.Jaxpr):
      return j, ()
  return None, ()


def _visit_jaxpr(t: _Trace, jaxpr, consts, scope: int):
  for var, value in zip(_scoped(scope, jaxpr.constvars), consts):
    _fix_varying_constant(t, var, value)
  for eqn in jaxpr.eqns:
    _visit_eqn(t, eqn, scope)


def _fix_varying_constant(t: _Trace, var, value):
  """A constant fixes the axes along which its values differ."""
  try:
    arr = np.asarray(value)
  except Exception:  # noqa: BLE001 - opaque constants (keys, ...) fix every axis
    t.fix_all(var, "a constant")
    return
  for axis in range(arr.ndim):
    if arr.shape[axis] > 1 and not np.all(arr == np.take(arr, [0], axis=axis)):
      t.fix(var, axis, "a constant that varies along it")


def _visit_eqn(t: _Trace, eqn, scope: int):
  prim = eqn.primitive.name
  ins, outs, p = _scoped(scope, eqn.invars), _scoped(scope, eqn.outvars), eqn.params
  for o in outs:
    t.seen(o)
  inner, consts = _sub_jaxpr(eqn)
  if inner is not None and prim not in CONTROL_FLOW \
      and len(inner.invars) == len(ins) and len(inner.outvars) == len(outs):
    inner_scope = next(t.scopes)
    for a, b in zip(_scoped(inner_scope, inner.invars), ins):
      for axis in range(_rank(a)):
        t.tie(a, axis, b, axis)
    _visit_jaxpr(t, inner, consts, inner_scope)
    for a, b in zip(_scoped(inner_scope, inner.outvars), outs):
      for axis in range(_rank(b)):
        t.tie(a, axis, b, axis)
    return
  out = outs[0] if outs else None
  if prim in ELEMENTWISE and len(outs) == 1:
    r = _rank(out)
    if all(_rank(v) in (0, r) for v in ins):
      for v in ins:
        if _rank(v) == r:
          for axis in range(r):
            t.tie(v, axis, out, axis)
      return
  elif prim == "broadcast_in_dim":
    for i, d in enumerate(p["broadcast_dimensions"]):
      t.tie(ins[0], i, out, d)
    return
  elif prim == "reshape" and p.get("dimensions") is None:
    return _visit_reshape(t, ins[0], out, prim)
  elif prim == "squeeze":
    kept = [a for a in range(_rank(ins[0])) if a not in set(p["dimensions"])]
    for j, a in enumerate(kept):
      t.tie(ins[0], a, out, j)
    return
  elif prim == "transpose":
    for j, a in enumerate(p["permutation"]):
      t.tie(ins[0], a, out, j)
    return
  elif prim in REDUCTIONS or prim in ORDERED_REDUCTIONS:
    reduced = set(p["axes"])
    kept = [a for a in range(_rank(ins[0])) if a not in reduced]
    for j, a in enumerate(kept):
      for v in ins:  # variadic reductions: every operand has the same shape
        t.tie(v, a, out, j)
    if prim in ORDERED_REDUCTIONS:
      for a in reduced:
        t.barrier(ins[0], a, prim)
    return
  elif prim == "dot_general":
    return _visit_dot(t, ins[0], ins[1], out, p["dimension_numbers"])
  elif prim == "conv_general_dilated":
    if _visit_conv(t, ins[0], ins[1], out, p):
      return
  elif prim == "gather":
    if _visit_gather(t, ins[0], ins[1], out, p):
      return
  elif prim in ("concatenate", "split") and _visit_pieces(t, prim, ins, outs, p):
    return
  elif prim in WINDOWED or prim in CUMULATIVE or prim in ("rev", "slice", "pad", "concatenate",
                                                          "dynamic_slice", "split"):
    return _visit_axiswise(t, prim, ins, outs, _touched_axes(prim, p, ins[0]))
  elif prim == "iota":
    t.fix_all(out, "an iota")
    return
  # Anything else: a barrier for every axis it reads, and its outputs move with nothing.
  for v in ins:
    for axis in range(_rank(v) if _is_var(v) else 0):
      t.barrier(v, axis, prim)
  for o in outs:
    for axis in range(_rank(o)):
      t.barrier_out(o, axis)


def _visit_reshape(t: _Trace, x, out, prim: str):
  """Ties the axes a reshape keeps (alone in their group, possibly among size-1 axes);
  an axis it flattens several into, or splits into several, is their product
  (`_Trace.compound`); axes regrouped otherwise ((6, 4) -> (4, 6)) are barriers."""
  a_shape, b_shape = _shape(x), _shape(out)
  i = j = 0
  while i < len(a_shape) or j < len(b_shape):
    gi, gj = [i], [j]
    pa = a_shape[i] if i < len(a_shape) else 1
    pb = b_shape[j] if j < len(b_shape) else 1
    i, j = i + 1, j + 1
    while pa != pb:
      if pa < pb:
        gi.append(i)
        pa *= a_shape[i]
        i += 1
      else:
        gj.append(j)
        pb *= b_shape[j]
        j += 1
    gi = [a for a in gi if a < len(a_shape) and a_shape[a] > 1]
    gj = [b for b in gj if b < len(b_shape) and b_shape[b] > 1]
    if len(gi) == 1 and len(gj) == 1:
      t.tie(x, gi[0], out, gj[0])
    elif len(gj) == 1:  # a flatten: the output axis is the product of the input's
      t.compound(out, gj[0], [(x, a) for a in gi])
    elif len(gi) == 1:  # a split: the input axis is the product of the output's
      t.compound(x, gi[0], [(out, b) for b in gj])
    else:
      for a in gi:
        t.barrier(x, a, prim + " (merging or splitting axes)")
      for b in gj:
        t.barrier_out(out, b)


def _visit_dot(t: _Trace, lhs, rhs, out, dims):
  (lc, rc), (lb, rb) = dims
  for a, b in zip(lc, rc):
    t.tie(lhs, a, rhs, b)
  for k, (a, b) in enumerate(zip(lb, rb)):
    t.tie(lhs, a, out, k)
    t.tie(rhs, b, out, k)
  lfree = [a for a in range(_rank(lhs)) if a not in lc and a not in lb]
  rfree = [b for b in range(_rank(rhs)) if b not in rc and b not in rb]
  for k, a in enumerate(lfree):
    t.tie(lhs, a, out, len(lb) + k)
  for k, b in enumerate(rfree):
    t.tie(rhs, b, out, len(lb) + len(lfree) + k)


def _visit_conv(t: _Trace, lhs, rhs, out, p) -> bool:
  """Dense or depthwise convolution; False for other groupings (then a barrier)."""
  dn = p["dimension_numbers"]
  lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
  groups = p["feature_group_count"]
  if p["batch_group_count"] != 1:
    return False
  c_in, c_out = _size(lhs, lhs_spec[1]), _size(rhs, rhs_spec[0])
  if groups == 1:
    t.tie(lhs, lhs_spec[1], rhs, rhs_spec[1])
  elif groups == c_in and c_out == c_in:  # depthwise, one filter per channel
    t.tie(lhs, lhs_spec[1], rhs, rhs_spec[0])
  else:
    return False
  t.tie(rhs, rhs_spec[0], out, out_spec[1])
  t.tie(lhs, lhs_spec[0], out, out_spec[0])
  for v, spec in ((lhs, lhs_spec), (rhs, rhs_spec), (out, out_spec)):
    for axis in spec[2:]:
      t.fix(v, axis, "a spatial axis of a convolution")
  return True


def _visit_pieces(t: _Trace, prim: str, ins, outs, p) -> bool:
  """A concatenation of, or a split into, pieces of one size `m` along an axis: that axis is
  the product (pieces, m), the first factor fixed (which piece), the second moving with the
  pieces' axis, so every piece takes the same permutation. False for pieces of unequal
  sizes (then a barrier)."""
  axis = p["dimension"] if prim == "concatenate" else p["axis"]
  whole, pieces = (outs[0], ins) if prim == "concatenate" else (ins[0], outs)
  if not _is_var(whole) or len(pieces) < 2 or len({_size(v, axis) for v in pieces}) != 1 \
      or any(_rank(v) != _rank(whole) for v in pieces):
    return False
  for v in pieces:
    for a in range(_rank(whole)):
      if a != axis:
        t.tie(v, a, whole, a)
  t.product(whole, axis, [len(pieces), _size(pieces[0], axis)],
            [[], [(v, axis) for v in pieces]], fixed=f"which piece of a {prim}")
  return True


def _visit_gather(t: _Trace, operand, indices, out, p) -> bool:
  """A gather that picks whole slices along some axes (`nn.Embed`'s lookup, `x[idx]`): the
  axes it indexes stay fixed (the indices come from the data), the axes it slices whole map
  one to one onto the output's, and the indices' batch axes onto the output's others. False
  for other forms (batched gathers), which are then a barrier."""
  dn = p["dimension_numbers"]
  if tuple(getattr(dn, "operand_batching_dims", ())):
    return False
  kept = [a for a in range(_rank(operand)) if a not in set(dn.collapsed_slice_dims)]
  offset = list(dn.offset_dims)
  if len(kept) != len(offset):
    return False
  for a in dn.collapsed_slice_dims:
    t.fix(operand, a, "an axis a gather indexes")
  for a, o in zip(kept, offset):
    if a in set(dn.start_index_map) or p["slice_sizes"][a] != _size(operand, a):
      t.fix(operand, a, "an axis a gather indexes")
      t.barrier_out(out, o)
    else:
      t.tie(operand, a, out, o)
  batch = [o for o in range(_rank(out)) if o not in set(offset)]
  for k, o in enumerate(batch):  # the index vector is the indices' last axis
    if _is_var(indices) and k < _rank(indices) - 1:
      t.tie(indices, k, out, o)
  return True


def _touched_axes(prim: str, p: dict, x) -> set:
  """Axes an axis-wise op (slice, pad, window, cumulative, ...) does not map one to one."""
  r = _rank(x)
  if prim in CUMULATIVE:
    return {p["axis"]}
  if prim == "rev":
    return set(p["dimensions"])
  if prim == "concatenate":
    return {p["dimension"]}
  if prim == "split":
    return {p["axis"]}
  if prim == "pad":
    return {a for a, cfg in enumerate(p["padding_config"]) if any(cfg)}
  if prim == "slice":
    strides = p.get("strides") or (1,) * r
    return {a for a in range(r) if p["start_indices"][a] != 0
            or p["limit_indices"][a] != _size(x, a) or strides[a] != 1}
  if prim == "dynamic_slice":
    return {a for a in range(r) if p["slice_sizes"][a] != _size(x, a)}
  # windowed reductions
  pad = p.get("padding", ((0, 0),) * r)
  ones = (1,) * r
  return {a for a in range(r) if p["window_dimensions"][a] != 1
          or p["window_strides"][a] != 1 or tuple(pad[a]) != (0, 0)
          or p.get("base_dilation", ones)[a] != 1 or p.get("window_dilation", ones)[a] != 1}


def _visit_axiswise(t: _Trace, prim: str, ins, out, touched: set):
  data = [v for v in ins if _is_var(v) and _rank(v) == _rank(out[0])]
  for v in data:
    for axis in range(_rank(v)):
      if axis in touched:
        t.barrier(v, axis, prim)
      else:
        for o in out:
          t.tie(v, axis, o, axis)
  for o in out:
    for axis in touched:
      t.barrier_out(o, axis)


def _trace(module, variables, inputs, apply_kwargs):
  paths, leaves, treedef = _leaf_paths(variables)

  def fn(*args):
    v = jax.tree_util.tree_unflatten(treedef, args[:len(leaves)])
    return module.apply(v, *args[len(leaves):], **apply_kwargs)

  try:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(
        *(jnp.asarray(leaf) for leaf in leaves), *inputs)
  except LmcError:
    raise
  except Exception as e:  # noqa: BLE001 - any failure to trace is the caller's input
    raise LmcError(f"derive_spec could not run module.apply on the given variables and inputs "
                   f"({type(e).__name__}: {e}); pass the variables from module.init and "
                   "example inputs of the right shape.") from None
  return paths, closed, out_shape


def _leaf_paths(tree):
  """(`/`-joined path of each leaf, the leaves, the treedef)."""
  with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
  paths = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in kp)
           for kp, _ in with_paths]
  return paths, [leaf for _, leaf in with_paths], treedef


def derive_spec(module, variables, *example_inputs, strict: bool = True,
                **apply_kwargs) -> PermutationSpec:
  """The permutation spec of `module`, read off `module.apply(variables, *example_inputs,
  **apply_kwargs)`.

  `variables` is the whole Flax variables dict of one model (`params`, and `batch_stats`
  or other collections where present); the spec's paths are its `/`-joined paths
  (`params/Dense_0/kernel`, `batch_stats/BatchNorm_0/mean`). Trace in evaluation mode
  (e.g. `train=False`) so running statistics take part; with `mutable=[...]` the updated
  collections are tied to the variables they update. Permutations are named `P_0, P_1,
  ...` in the order the trace first computes them.

  An op that moves units other than one to one (a reshape that flattens channels into one
  axis, a concatenation or split of channels, GroupNorm's groups, a grouped convolution, a
  loop) raises LmcError naming it; with `strict=False` the units it touches are left
  unpermuted instead (a smaller symmetry, never a wrong one) and a warning names them.
  """
  paths, closed, out_shape = _trace(module, variables, example_inputs, apply_kwargs)
  jaxpr = closed.jaxpr
  t = _Trace()
  n_vars = len(paths)
  var_nodes = _scoped(0, jaxpr.invars[:n_vars])
  for v in _scoped(0, jaxpr.invars[n_vars:]):
    t.fix_all(v, "an input of the model")
  _visit_jaxpr(t, jaxpr, closed.consts, 0)
  out_vars = _scoped(0, jaxpr.outvars)
  mutated = _mutated_outputs(out_shape, apply_kwargs, paths)
  for k, v in enumerate(out_vars):
    if k in mutated:
      src = var_nodes[mutated[k]]
      for axis in range(_rank(src)):
        t.tie(src, axis, v, axis)
    else:
      t.fix_all(v, "an output of the model")
  _check_used(jaxpr, paths, var_nodes)
  return _spec_from_classes(t, paths, var_nodes, strict)


def _mutated_outputs(out_shape, apply_kwargs, paths) -> Dict[int, int]:
  """Output leaf index -> variable index, for the collections `mutable=` returns."""
  if not apply_kwargs.get("mutable"):
    return {}
  y, updates = out_shape
  n_y = len(jax.tree_util.tree_leaves(y))
  upd_paths, _, _ = _leaf_paths(updates)
  index = {p: i for i, p in enumerate(paths)}
  return {n_y + k: index[p] for k, p in enumerate(upd_paths) if p in index}


def _check_used(jaxpr, paths, var_nodes):
  used = set()

  def walk(j):
    for eqn in j.eqns:
      used.update(v for v in eqn.invars if isinstance(v, jcore.Var))
      inner, _ = _sub_jaxpr(eqn)
      if inner is not None:
        walk(inner)
  walk(jaxpr)
  used.update(v for v in jaxpr.outvars if isinstance(v, jcore.Var))
  unused = [p for p, v in zip(paths, var_nodes) if v.var not in used]
  if unused:
    raise LmcError(f"derive_spec: variables {unused} do not take part in this call of "
                   "module.apply, so their axes can not be derived; pass the apply arguments "
                   "that use them (e.g. train=False for BatchNorm's running statistics) or "
                   "write the spec by hand.")


def _settle_compounds(t: _Trace):
  """Products that fall into one class: with the same factors, their factors move
  together; with other factors (a flatten of (2, 8) read where one of (4, 4) is) they can
  not be followed. Returns ({root: (factor sizes, sub-nodes)}, [(node, why, size)])."""
  conflicts, changed = [], True
  while changed:
    changed, first = False, {}
    for node, sizes, subs in t.compounds:
      root = t.find(node)
      if root not in first:
        first[root] = (sizes, subs)
      elif first[root][0] == sizes:
        for a, b in zip(first[root][1], subs):
          if t.find(a) != t.find(b):
            t.union(a, b)
            changed = True
      else:
        conflicts.append((node, "reshape (one axis flattened two ways)", _size(*node)))
  return {t.find(n): v for n, v in first.items()} if t.compounds else {}, conflicts


def _spec_from_classes(t: _Trace, paths, var_nodes, strict: bool = True) -> PermutationSpec:
  compound_of, conflicts = _settle_compounds(t)
  classes: Dict[Node, List[Node]] = {}
  for n in t.parent:
    classes.setdefault(t.find(n), []).append(n)
  var_index = {v: i for i, v in enumerate(var_nodes)}

  def factors(root):  # the sub-classes of a product, with their sizes
    sizes, subs = compound_of[root]
    return [(size, t.find(sub)) for size, sub in zip(sizes, subs)]

  products_of: Dict[Node, set] = {}  # factor class -> the product classes it is part of
  for root in compound_of:
    for _, sub in factors(root):
      products_of.setdefault(sub, set()).add(root)

  def variables_in(root, seen=()):
    """Variables with an axis in the class, or in a product it is a factor of (they hold
    the factor's units through a view)."""
    own = {paths[var_index[n[0]]] for n in classes[root] if len(n) == 2 and n[0] in var_index}
    for product in products_of.get(root, ()):
      if product not in seen:
        own.update(variables_in(product, seen + (root,)))
    return sorted(own)

  # A product's factors share what happens to the product: a barrier or a fixed axis.
  barriers = [(t.find(n), prim, _size(*n)) for n, prim in t.barriers] + \
      [(t.find(n), why, size) for n, why, size in conflicts]
  for root, prim, _ in barriers:  # the list grows as it is walked
    if root in compound_of:
      barriers.extend((sub, prim, size) for size, sub in factors(root)
                      if (sub, prim, size) not in barriers)
  genuinely_fixed = {t.find(n) for n in t.fixed}
  stack = list(genuinely_fixed)
  while stack:
    root = stack.pop()
    for _, sub in factors(root) if root in compound_of else ():
      if sub not in genuinely_fixed:
        genuinely_fixed.add(sub)
        stack.append(sub)

  unfollowed = {}
  for root, prim, size in barriers:
    if root in genuinely_fixed or root in unfollowed or not variables_in(root):
      continue
    why = f"`{prim}` on an axis of size {size} that moves with {', '.join(variables_in(root))}"
    if strict:
      raise LmcError(f"derive_spec can not follow {why}; write the permutation spec for this "
                     "module by hand (lmc_jax.permutation_spec_from_axes) and check it with "
                     "lmc_jax.check_spec, or pass strict=False to leave those units "
                     "unpermuted.")
    unfollowed[root] = why
  for why in unfollowed.values():
    logging.warning("derive_spec leaves units unpermuted: it can not follow %s.", why)
  fixed = genuinely_fixed | set(unfollowed) | {t.find(n) for n in t.soft_fixed}
  free = [r for r in classes if r not in fixed and variables_in(r)]
  order = lambda r: min(t.first_seen.get(n, 1 << 60) for n in classes[r])
  names = {r: f"P_{k}" for k, r in enumerate(sorted(free, key=lambda r: (order(r),
                                                                         variables_in(r))))}

  def expand(root, size):  # [(size, class)] of an axis, products split into their factors
    if root not in compound_of:
      return [(size, root)]
    return [part for sub_size, sub in factors(root) for part in expand(sub, sub_size)]

  axes: Dict[str, Tuple[Optional[str], ...]] = {}
  views: Dict[str, Tuple[int, ...]] = {}
  for path, v in zip(paths, var_nodes):
    view, names_of, split = [], [], False
    for a in range(_rank(v)):
      parts = expand(t.find(t.node(v, a)), _size(v, a)) if (v, a) in t.parent else []
      if len(parts) > 1 and any(r in names for _, r in parts):
        view.extend(size for size, _ in parts)
        names_of.extend(names.get(r) for _, r in parts)
        split = True
      else:
        view.append(_size(v, a))
        names_of.append(names.get(t.find(t.node(v, a))) if (v, a) in t.parent else None)
    axes[path] = tuple(names_of)
    if split:
      views[path] = tuple(view)
  return permutation_spec_from_axes(axes, views)


def check_spec(module, variables, spec: PermutationSpec, *example_inputs, key=None,
               trials: int = 3, **apply_kwargs) -> float:
  """Largest absolute change of the outputs of `module.apply(variables, *example_inputs,
  **apply_kwargs)` over `trials` random permutations under `spec` (about 0, up to float
  rounding, for a correct spec). Raises LmcError if the spec does not fit `variables`."""
  validate_spec(spec, variables)
  key = jax.random.key(0) if key is None else key
  run = jax.jit(lambda v: jax.tree_util.tree_leaves(
      module.apply(v, *example_inputs, **apply_kwargs)))
  base = run(variables)
  sizes = perm_sizes(spec, variables)
  worst = 0.0
  for k in range(trials):
    perm = random_permutation(jax.random.fold_in(key, k), sizes)
    out = run(apply_permutation(spec, perm, variables))
    for a, b in zip(base, out):
      worst = max(worst, float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float32)
                                                 - jnp.asarray(b, jnp.float32)))))
  return worst


def spec_without_prefix(spec: PermutationSpec, prefix: str = "params") -> PermutationSpec:
  """The spec of one collection, its paths relative to it (`params/Dense_0/kernel` ->
  `Dense_0/kernel`), for code that holds the params dict alone."""
  head = prefix.rstrip("/") + "/"
  return permutation_spec_from_axes({p[len(head):]: a for p, a in spec.axes_to_perm.items()
                                     if p.startswith(head)})

