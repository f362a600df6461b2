"""Weight matching as one jittable function, so many pairs align at once under `vmap`.

The same coordinate descent as `weight_matching` (same objective, same layer orders drawn
from the key, same stopping rule), with optax's Hungarian solver in place of scipy's and
float32 arithmetic (signed permutations where the spec lets groups flip, as there):
`lax.while_loop` over sweeps, `lax.fori_loop` over a sweep's steps and `lax.switch` to pick
the permutation each step updates (so the program holds one Hungarian solve per permutation
group, not one per group and step).
"""
from __future__ import annotations

import functools
from typing import Dict

import jax
import jax.numpy as jnp
from optax.assignment import hungarian_algorithm

from lmc_jax.symmetry.spec import (
  PermutationSpec,
  matched_axes,
  permute_leaf,
  signed_permutation,
  spec_from_key,
  spec_key,
  unit_index,
  unit_sign,
  view_leaves,
)
from lmc_jax.tree_utils import flatten


def _costs(spec, perm, flat_a, flat_b, p, n):
  """(even, odd) similarities, as `weight.matching_costs`."""
  flips = set(spec.signs.get(p, ()))
  even, odd = jnp.zeros((n, n), jnp.float32), jnp.zeros((n, n), jnp.float32)
  for path, axis in matched_axes(spec, p):
    wb = permute_leaf(spec, perm, path, flat_b[path], skip=p)
    wa = jnp.moveaxis(flat_a[path], axis, 0).reshape(n, -1)
    wb = jnp.moveaxis(wb, axis, 0).reshape(n, -1)
    if (path, axis) in flips:
      odd = odd + wa @ wb.T
    else:
      even = even + wa @ wb.T
  return even, odd


def weight_matching_jax(key, spec: PermutationSpec, sizes: Dict[str, int], params_a, params_b,
                        max_iter: int = 50):
  """(perm dict of int32 arrays, sweeps run); jittable and vmappable (spec, sizes and
  max_iter static)."""
  names = sorted(sizes)
  flat_a = view_leaves(spec, {k: jnp.asarray(v, jnp.float32) for k, v in flatten(params_a).items()})
  flat_b = view_leaves(spec, {k: jnp.asarray(v, jnp.float32) for k, v in flatten(params_b).items()})
  perm0 = {p: jnp.arange(sizes[p], dtype=jnp.int32) for p in names}

  def update(p):
    def branch(perm):
      n = sizes[p]
      even, odd = _costs(spec, perm, flat_a, flat_b, p, n)
      cost = even + (jnp.abs(odd) if p in spec.signs else odd)
      rows, cols = hungarian_algorithm(-cost)  # maximise similarity
      new_perm = jnp.zeros(n, jnp.int32).at[rows].set(cols.astype(jnp.int32))
      idx = jnp.arange(n)
      new = cost[idx, new_perm].sum()
      if p in spec.signs:
        new_perm = signed_permutation(new_perm, jnp.where(odd[idx, new_perm] < 0, -1, 1))
      held = unit_index(perm[p])
      old = (even[idx, held] + unit_sign(perm[p]) * odd[idx, held]).sum()
      better = new > old + 1e-6 * jnp.maximum(1.0, jnp.abs(old))
      out = dict(perm)
      out[p] = jnp.where(better, new_perm, perm[p])
      return out, better
    return branch

  branches = [update(p) for p in names]

  def sweep(state):
    perm, it, _ = state
    order = jax.random.permutation(jax.random.fold_in(key, it), len(names))

    def step(s, carry):  # one switch in a loop: each branch (a Hungarian solve) compiled once
      perm, changed = carry
      perm, better = jax.lax.switch(order[s], branches, perm)
      return perm, changed | better
    perm, changed = jax.lax.fori_loop(0, len(names), step, (perm, jnp.array(False)))
    return perm, it + 1, changed

  perm, sweeps, _ = jax.lax.while_loop(lambda st: (st[1] < max_iter) & st[2], sweep,
                                       (perm0, jnp.int32(0), jnp.array(True)))
  return perm, sweeps


@functools.lru_cache(maxsize=None)
def _matcher(key, sizes_items, max_iter):
  spec = spec_from_key(key)
  sizes = dict(sizes_items)
  return jax.jit(jax.vmap(lambda k, a, b: weight_matching_jax(k, spec, sizes, a, b, max_iter)))


def match_many(spec: PermutationSpec, sizes: Dict[str, int], keys, params_a, params_b,
               max_iter: int = 50):
  """Matches P pairs at once: `params_a`, `params_b` stacked `(P, ...)`, `keys` `(P,)`.

  Returns (perms {name: (P, n) int32}, sweeps (P,)). Compiled once per spec, sizes and
  max_iter."""
  fn = _matcher(spec_key(spec), tuple(sorted(sizes.items())), max_iter)
  return fn(keys, params_a, params_b)
