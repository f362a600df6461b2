"""The rules by which each jaxpr primitive ties the axes of its operands and results in an
`AxisTrace` (see `symmetry.axis_trace`): `visit_jaxpr` walks a jaxpr, inlining calls of
sub-jaxprs with their variables renamed per call and handing loops and branches to
`symmetry.loops`."""
from __future__ import annotations

import numpy as np

from lmc_jax.nn import native_conv
from lmc_jax.symmetry.axis_trace import (
  AxisTrace,
  _is_var,
  _shape,
  rank,
  scoped,
  size_of,
  sub_jaxpr,
)
from lmc_jax.symmetry.loops import visit_loop

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


def visit_jaxpr(t: AxisTrace, jaxpr, consts, scope: int):
  for var, value in zip(scoped(scope, jaxpr.constvars), consts):
    t.consts.append(var)
    _fix_varying_constant(t, var, value)
  for eqn in jaxpr.eqns:
    _visit_eqn(t, eqn, scope)


def _fix_varying_constant(t: AxisTrace, var, value):
  """A constant fixes the axes along which its values differ."""
  try:
    arr = np.asarray(value)
  except Exception:  # noqa: BLE001 - opaque constants (keys, ...) fix every axis
    t.fix_all(var, "a constant")
    return
  for axis in range(arr.ndim):
    if arr.shape[axis] > 1 and not np.all(arr == np.take(arr, [0], axis=axis)):
      t.fix(var, axis, "a constant that varies along it")


def _visit_eqn(t: AxisTrace, eqn, scope: int):
  prim = eqn.primitive.name
  ins, outs, p = scoped(scope, eqn.invars), scoped(scope, eqn.outvars), eqn.params
  conv = native_conv.conv_equivalent(prim, p, [rank(v) for v in ins])
  if conv is not None:  # lmc_jax's compiled convolution means lax's
    prim, p = "conv_general_dilated", conv
  for o in outs:
    t.seen(o)
  if prim in CONTROL_FLOW:
    if visit_loop(t, prim, ins, outs, p, visit_jaxpr):
      return
  inner, consts = sub_jaxpr(eqn)
  if inner is not None and prim not in CONTROL_FLOW \
      and len(inner.invars) == len(ins) and len(inner.outvars) == len(outs):
    inner_scope = next(t.scopes)
    for a, b in zip(scoped(inner_scope, inner.invars), ins):
      t.link(b, a)
    visit_jaxpr(t, inner, consts, inner_scope)
    for a, b in zip(scoped(inner_scope, inner.outvars), outs):
      t.link(a, b)
    return
  if any(_is_var(v) and v in t.data for v in ins):
    t.data.update(o for o in outs if _is_var(o))
  t.eqns.append((prim, ins, outs, p))
  out = outs[0] if outs else None
  if prim in ELEMENTWISE and len(outs) == 1:
    r = rank(out)
    if all(rank(v) in (0, r) for v in ins):
      for v in ins:
        if rank(v) == r:
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
    kept = [a for a in range(rank(ins[0])) if a not in set(p["dimensions"])]
    for j, a in enumerate(kept):
      t.tie(ins[0], a, out, j)
    return
  elif prim == "transpose":
    for j, a in enumerate(p["permutation"]):
      t.tie(ins[0], a, out, j)
    return
  elif prim in REDUCTIONS or prim in ORDERED_REDUCTIONS:
    reduced = set(p["axes"])
    kept = [a for a in range(rank(ins[0])) if a not in reduced]
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
    return _visit_axiswise(t, prim, ins, outs, _touched_axes(prim, p, ins[0]),
                           _keeps_all(prim, p))
  elif prim == "iota":
    t.fix_all(out, "an iota")
    return
  # Anything else: a barrier for every axis it reads, and its outputs move with nothing.
  for v in ins:
    for axis in range(rank(v) if _is_var(v) else 0):
      t.barrier(v, axis, prim)
  for o in outs:
    for axis in range(rank(o)):
      t.barrier_out(o, axis)
  t.passes_through([(v, a) for v in ins for a in range(rank(v) if _is_var(v) else 0)],
                   [(o, a) for o in outs for a in range(rank(o))])


def _visit_reshape(t: AxisTrace, x, out, prim: str):
  """Ties the axes a reshape keeps (alone in their group, possibly among size-1 axes);
  an axis it flattens several into, or splits into several, is their product
  (`AxisTrace.compound`); axes regrouped otherwise ((6, 4) -> (4, 6)) are barriers."""
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
      t.passes_through([(x, a) for a in gi], [(out, b) for b in gj], keeps_all=True)


def _visit_dot(t: AxisTrace, lhs, rhs, out, dims):
  (lc, rc), (lb, rb) = dims
  for a, b in zip(lc, rc):
    t.tie(lhs, a, rhs, b)
  for k, (a, b) in enumerate(zip(lb, rb)):
    t.tie(lhs, a, out, k)
    t.tie(rhs, b, out, k)
  lfree = [a for a in range(rank(lhs)) if a not in lc and a not in lb]
  rfree = [b for b in range(rank(rhs)) if b not in rc and b not in rb]
  for k, a in enumerate(lfree):
    t.tie(lhs, a, out, len(lb) + k)
  for k, b in enumerate(rfree):
    t.tie(rhs, b, out, len(lb) + len(lfree) + k)


def _visit_conv(t: AxisTrace, lhs, rhs, out, p) -> bool:
  """A convolution, grouped or not; False for batch-grouped ones (then a barrier).

  With G feature groups the input channels are (G, c_in / G) and the output channels
  (G, c_out / G), row-major: the group factor is one class on both sides, the kernel's
  input axis moves with the input's within-group factor (one permutation for every group),
  and the output's within-group factor is a class of its own. Depthwise convolutions (one
  filter per channel) tie input and output channels directly."""
  dn = p["dimension_numbers"]
  lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
  groups = p["feature_group_count"]
  if p["batch_group_count"] != 1 or not _is_var(rhs):
    return False
  c_in, c_out = size_of(lhs, lhs_spec[1]), size_of(rhs, rhs_spec[0])
  if groups == 1:
    t.tie(lhs, lhs_spec[1], rhs, rhs_spec[1])
  elif c_in % groups or c_out % groups or not _is_var(lhs):
    return False
  elif c_in == groups and c_out == groups:  # depthwise, one filter per channel
    t.tie(lhs, lhs_spec[1], rhs, rhs_spec[0])
  else:
    per_in, per_out = c_in // groups, c_out // groups
    group_in = t.node(lhs, lhs_spec[1]) if per_in == 1 else t.product(
        lhs, lhs_spec[1], [groups, per_in], [[], [(rhs, rhs_spec[1])]])[0]
    group_out = t.node(rhs, rhs_spec[0]) if per_out == 1 else t.product(
        rhs, rhs_spec[0], [groups, per_out], [[], []])[0]
    t.union(group_in, group_out)
  t.tie(rhs, rhs_spec[0], out, out_spec[1])
  t.tie(lhs, lhs_spec[0], out, out_spec[0])
  for v, spec in ((lhs, lhs_spec), (rhs, rhs_spec), (out, out_spec)):
    for axis in spec[2:]:
      t.fix(v, axis, "a spatial axis of a convolution")
  return True


def _visit_pieces(t: AxisTrace, prim: str, ins, outs, p) -> bool:
  """A concatenation of, or a split into, pieces along an axis: that axis is the sum of
  the pieces' (`AxisTrace.blocks`), each block moving with its piece and independently of
  the others, whether the pieces are of one size or not. False where a piece has another
  rank (then a barrier)."""
  axis = p["dimension"] if prim == "concatenate" else p["axis"]
  whole, pieces = (outs[0], ins) if prim == "concatenate" else (ins[0], outs)
  if not _is_var(whole) or len(pieces) < 2 or not all(_is_var(v) for v in pieces) \
      or any(rank(v) != rank(whole) for v in pieces):
    return False
  for v in pieces:
    for a in range(rank(whole)):
      if a != axis:
        t.tie(v, a, whole, a)
  t.blocks(whole, axis, [(v, axis) for v in pieces])
  return True


def _visit_gather(t: AxisTrace, operand, indices, out, p) -> bool:
  """A gather that picks whole slices along some axes (`nn.Embed`'s lookup, `x[idx]`): the
  axes it indexes stay fixed (the indices come from the data), the axes it slices whole map
  one to one onto the output's, and the indices' batch axes onto the output's others. False
  for other forms (batched gathers), which are then a barrier."""
  dn = p["dimension_numbers"]
  if tuple(getattr(dn, "operand_batching_dims", ())):
    return False
  kept = [a for a in range(rank(operand)) if a not in set(dn.collapsed_slice_dims)]
  offset = list(dn.offset_dims)
  if len(kept) != len(offset):
    return False
  def indexed(a):  # rows picked by the data (a lookup table's), or a fixed selection
    if _is_var(indices) and indices in t.data:
      t.fix(operand, a, "an axis a gather indexes")
    else:
      t.barrier(operand, a, "gather")

  for a in dn.collapsed_slice_dims:
    indexed(a)
  for a, o in zip(kept, offset):
    if a in set(dn.start_index_map) or p["slice_sizes"][a] != size_of(operand, a):
      indexed(a)
      t.barrier_out(out, o)
      t.passes_through([(operand, a)], [(out, o)])
    else:
      t.tie(operand, a, out, o)
  batch = [o for o in range(rank(out)) if o not in set(offset)]
  for k, o in enumerate(batch):  # the index vector is the indices' last axis
    if _is_var(indices) and k < rank(indices) - 1:
      t.tie(indices, k, out, o)
  return True


def _touched_axes(prim: str, p: dict, x) -> set:
  """Axes an axis-wise op (slice, pad, window, cumulative, ...) does not map one to one."""
  r = rank(x)
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
            or p["limit_indices"][a] != size_of(x, a) or strides[a] != 1}
  if prim == "dynamic_slice":
    return {a for a in range(r) if p["slice_sizes"][a] != size_of(x, a)}
  # windowed reductions
  pad = p.get("padding", ((0, 0),) * r)
  ones = (1,) * r
  return {a for a in range(r) if p["window_dimensions"][a] != 1
          or p["window_strides"][a] != 1 or tuple(pad[a]) != (0, 0)
          or p.get("base_dilation", ones)[a] != 1 or p.get("window_dilation", ones)[a] != 1}


def _keeps_all(prim: str, p: dict) -> bool:
  """Whether an axis-wise op puts every element it reads somewhere of its own."""
  if prim == "pad":
    return all(lo >= 0 and hi >= 0 and mid >= 0 for lo, hi, mid in p["padding_config"])
  return prim in ("rev", "concatenate", "split")


def _visit_axiswise(t: AxisTrace, prim: str, ins, out, touched: set, keeps_all: bool = False):
  data = [v for v in ins if _is_var(v) and rank(v) == rank(out[0])]
  for axis in touched:
    t.passes_through([(v, axis) for v in data], [(o, axis) for o in out], keeps_all)
  for v in data:
    for axis in range(rank(v)):
      if axis in touched:
        t.barrier(v, axis, prim)
      else:
        for o in out:
          t.tie(v, axis, o, axis)
  for o in out:
    for axis in touched:
      t.barrier_out(o, axis)
