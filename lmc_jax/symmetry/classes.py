"""From the classes of `symmetry.axis_trace` to a permutation spec: which classes are free
hidden-unit permutations, which can never carry units, which a barrier stops, and how each
variable's axes hold them (directly, as factors of a view, or as blocks of a
concatenation)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

from lmc_jax.errors import LmcError
from lmc_jax.symmetry.axis_trace import AxisTrace, Node, rank, size_of
from lmc_jax.symmetry.spec import block_path, permutation_spec_from_axes


def _settle(t: AxisTrace):
  """Products (or concatenations) that fall into one class: with the same parts, their
  parts move together; with other parts (a flatten of (2, 8) read where one of (4, 4) is),
  or a product where a concatenation is, they can not be followed. Returns ({root: (part
  sizes, sub-nodes)} of products, the same of concatenations, [(node, why, size)])."""
  changed = True
  while changed:
    changed, first, conflicts = False, {}, []
    for kind, entries in (("product", t.compounds), ("blocks", t.sums)):
      for node, sizes, subs in entries:
        root = t.find(node)
        if root not in first:
          first[root] = (kind, sizes, subs)
        elif first[root][:2] == (kind, sizes):
          for x, y in zip(first[root][2], subs):
            if t.find(x) != t.find(y):
              t.union(x, y)
              changed = True
        else:
          why = ("reshape (one axis flattened two ways)" if kind == first[root][0] == "product"
                 else "concatenate (one axis made of other blocks)")
          conflicts.append((node, why, size_of(*node)))
  out = {"product": {}, "blocks": {}}
  for n, (kind, sizes, subs) in first.items():
    out[kind][t.find(n)] = (sizes, subs)
  return out["product"], out["blocks"], conflicts


def _unit_free(t: AxisTrace, fixed: set, compound_of, bare) -> set:
  """The classes that can never carry hidden units: the fixed ones, the parts of fixed
  products or concatenations (`compound_of`: both), the products or concatenations of
  such parts, and what barriers make from such classes alone (a
  class token sliced off token positions; `bare(root)`: a class of no variable, nothing to
  permute, counts as such when read); where a barrier keeps every element (a kernel's taps
  flipped for a transposed convolution, a padding), what it reads when what it makes is
  such. Grows `fixed` to its closure and returns it."""
  fixed = set(fixed)
  free_of_units = lambda r: r in fixed or bare(r)
  changed = True
  while changed:
    changed = False
    for root, (sizes, subs) in compound_of.items():
      roots = {t.find(sub) for sub in subs}
      if root in fixed:
        new = roots - fixed
      else:  # parts of one element carry no permutation
        units = all(free_of_units(t.find(sub)) or n <= 1 for n, sub in zip(sizes, subs))
        new = {root} if units else set()
      fixed |= new
      changed |= bool(new)
    for reads, makes, keeps_all in t.passes:
      ins, outs = {t.find(n) for n in reads}, {t.find(n) for n in makes}
      new = outs - fixed if all(free_of_units(r) for r in ins) else set()
      if keeps_all and outs <= fixed | new:
        new |= ins - fixed
      fixed |= new
      changed |= bool(new)
  return fixed


def spec_from_classes(t: AxisTrace, paths, var_nodes, strict: bool = True):
  """(the spec of the classes, {class root: permutation name}, `carried(value)`: per axis
  of a value, the class roots on it)."""
  compound_of, blocks_of, conflicts = _settle(t)
  parts_of = {**compound_of, **blocks_of}
  classes: Dict[Node, List[Node]] = {}
  for n in t.parent:
    classes.setdefault(t.find(n), []).append(n)
  var_index = {v: i for i, v in enumerate(var_nodes)}

  def parts(root):  # the sub-classes of a product or concatenation, with their sizes
    sizes, subs = parts_of[root]
    return [(size, t.find(sub)) for size, sub in zip(sizes, subs)]

  wholes_of: Dict[Node, set] = {}  # part class -> the classes it is a part of
  for root in parts_of:
    for _, sub in parts(root):
      wholes_of.setdefault(sub, set()).add(root)

  def variables_in(root, seen=()):
    """Variables with an axis in the class, or in a product or concatenation it is part of
    (they hold the part's units through a view or a block)."""
    own = {paths[var_index[n[0]]] for n in classes[root] if len(n) == 2 and n[0] in var_index}
    for whole in wholes_of.get(root, ()):
      if whole not in seen:
        own.update(variables_in(whole, seen + (root,)))
    return sorted(own)

  def blocks(root, size):  # [(size, class)] of an axis, concatenations split into blocks
    if root not in blocks_of:
      return [(size, root)]
    return [b for sub_size, sub in parts(root) for b in blocks(sub, sub_size)]

  def expand(root, size):  # [(size, class)] of a block, products split into their factors
    if root not in compound_of:
      return [(size, root)]
    return [f for sub_size, sub in parts(root) for f in expand(sub, sub_size)]

  # What a spec can not hold: blocks inside a product (a concatenation flattened), blocks
  # on two axes of one variable.
  for root in compound_of:
    conflicts.extend((sub, "concatenate (blocks flattened into another axis)", n)
                     for n, sub in parts(root) if sub in blocks_of)
  for v in var_nodes:
    blocked = [a for a in range(rank(v)) if (v, a) in t.parent and t.find((v, a)) in blocks_of]
    conflicts.extend((t.find((v, a)), "concatenate (blocks on two axes of one variable)",
                      size_of(v, a)) for a in blocked[1:])

  # A whole's parts share what happens to the whole: a barrier or a fixed axis.
  barriers = [(t.find(n), prim, size_of(*n)) for n, prim in t.barriers] + \
      [(t.find(n), why, size) for n, why, size in conflicts]
  for root, prim, _ in barriers:  # the list grows as it is walked
    if root in parts_of:
      barriers.extend((sub, prim, size) for size, sub in parts(root)
                      if (sub, prim, size) not in barriers)
  genuinely_fixed = _unit_free(t, {t.find(n) for n in t.fixed}, parts_of,
                               lambda r: not variables_in(r) and r not in parts_of)

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

  def axis_names(root, size):  # (view sizes, names) of one axis of a leaf or block
    factors = expand(root, size)
    if len(factors) > 1 and any(r in names for _, r in factors):
      return [n for n, _ in factors], [names.get(r) for _, r in factors]
    return [size], [names.get(root)]

  axes: Dict[str, Tuple[Optional[str], ...]] = {}
  views: Dict[str, Tuple[int, ...]] = {}
  held_blocks: Dict[str, Tuple[int, Tuple[int, ...]]] = {}

  def add(path, roots, shape):  # a leaf (or block) whose axes are in classes `roots`
    view, names_of = [], []
    for root, n in zip(roots, shape):
      sizes, named = axis_names(root, n) if root is not None else ([n], [None])
      view.extend(sizes)
      names_of.extend(named)
    axes[path] = tuple(names_of)
    if tuple(view) != tuple(shape):
      views[path] = tuple(view)

  for path, v in zip(paths, var_nodes):
    shape = [size_of(v, a) for a in range(rank(v))]
    roots = [t.find((v, a)) if (v, a) in t.parent else None for a in range(rank(v))]
    split = [a for a, r in enumerate(roots) if r in blocks_of and
             any(b in names or (b in compound_of and any(f in names for _, f in expand(b, n)))
                 for n, b in blocks(r, shape[a]))]
    if not split:
      add(path, roots, shape)
      continue
    a = split[0]
    held = blocks(roots[a], shape[a])
    held_blocks[path] = (a, tuple(n for n, _ in held))
    for k, (n, b) in enumerate(held):
      add(block_path(path, k), roots[:a] + [b] + roots[a + 1:], shape[:a] + [n] + shape[a + 1:])

  def carried(v):
    return [[f for n, b in blocks(t.find((v, a)), size_of(v, a)) for _, f in expand(b, n)]
            if (v, a) in t.parent else [] for a in range(rank(v))]
  return permutation_spec_from_axes(axes, views, blocks=held_blocks), names, carried
