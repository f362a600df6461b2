"""Permutation specs read off a Flax module's own computation.

`derive_spec(module, variables, *inputs)` traces `module.apply` to a jaxpr and ties, with
`symmetry.axis_trace` and the rules of `symmetry.primitive_rules` (loops and branches in
`symmetry.loops`), the axes every primitive maps one to one. Nodes tied together form a
class; a class holding an axis of an input or output of the model, a spatial axis of a
convolution or an axis along which a constant varies can not be permuted, nor can what is
made from such classes alone. Every other class that holds axes of variables is one free
hidden-unit permutation: permuting all of its axes at once leaves the outputs unchanged,
and two classes move independently. A variable axis that is a product of classes (the
flattened input of a Dense) gets a view (`PermutationSpec.views`) with one axis per
factor; one that is a concatenation (a DenseNet layer's input) is held as blocks
(`PermutationSpec.blocks`), each block its own classes (`symmetry.classes`).

If an axis a barrier touches belongs to a class that carries units, the symmetry can not
be followed and the derivation stops with one sentence naming the op and the variables
(or, with `strict=False`, leaves that class unpermuted); write such a spec by hand
(`permutation_spec_from_axes`) and check it with `check_spec`.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from lmc_jax.data.datasets import dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import build_network
from lmc_jax.nn.models import abstract_variables
from lmc_jax.symmetry.axis_trace import (
  AxisTrace,
  rank,
  scoped,
  sub_jaxpr,
)
from lmc_jax.symmetry.classes import spec_from_classes
from lmc_jax.symmetry.primitive_rules import visit_jaxpr
from lmc_jax.symmetry.signs import sign_flips
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  apply_permutation,
  block_path,
  perm_sizes,
  permutation_spec_from_axes,
  random_signed_permutation,
  validate_spec,
)


def _trace(module, variables, inputs, apply_kwargs):
  paths, leaves, treedef = _leaf_paths(variables)

  def fn(*args):
    v = jax.tree_util.tree_unflatten(treedef, args[:len(leaves)])
    return module.apply(v, *args[len(leaves):], **apply_kwargs)

  try:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(
        *(_abstract(leaf) for leaf in leaves), *inputs)
  except LmcError:
    raise
  except Exception as e:  # noqa: BLE001 - any failure to trace is the caller's input
    raise LmcError(f"derive_spec could not run module.apply on the given variables and inputs "
                   f"({type(e).__name__}: {e}); pass the variables from module.init and "
                   "example inputs of the right shape.") from None
  return paths, closed, out_shape


def _abstract(leaf):
  """What `leaf` is traced as (the shape, canonical dtype and weak type `jnp.asarray(leaf)`
  would have), without making an array: a variable's values play no part in the trace."""
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return leaf
  if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
    return jax.ShapeDtypeStruct(leaf.shape, jax.dtypes.canonicalize_dtype(leaf.dtype),
                                weak_type=bool(getattr(leaf, "weak_type", False)))
  return jnp.asarray(leaf)


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
  or other collections where present), as arrays or as `jax.ShapeDtypeStruct`s (only
  shapes and dtypes are read); the spec's paths are its `/`-joined paths
  (`params/Dense_0/kernel`, `batch_stats/BatchNorm_0/mean`). Trace in evaluation mode
  (e.g. `train=False`) so running statistics take part; with `mutable=[...]` the updated
  collections are tied to the variables they update. Permutations are named `P_0, P_1,
  ...` in the order the trace first computes them.

  Flattens, splits, equal pieces of a concatenation and grouped convolutions are followed
  as products of axes (views of the variables that hold them); loops and branches
  (`lax.scan`, `nn.RNN`, `while`, `cond`) through their bodies (`symmetry.loops`); slices,
  gathers, flips and paddings of axes that carry no units (token positions, a kernel's
  taps) pass. An op that moves units otherwise (a slice of hidden units, an argmax, a scan
  stepping along them, unequal pieces concatenated, a reshape that regroups axes) raises
  LmcError naming it; with `strict=False` the units it touches are left
  unpermuted instead (a smaller symmetry, never a wrong one) and a warning names them.
  """
  paths, closed, out_shape = _trace(module, variables, example_inputs, apply_kwargs)
  jaxpr = closed.jaxpr
  t = AxisTrace()
  n_vars = len(paths)
  var_nodes = scoped(0, jaxpr.invars[:n_vars])
  for v in scoped(0, jaxpr.invars[n_vars:]):
    t.fix_all(v, "an input of the model")
    t.data.add(v)
  visit_jaxpr(t, jaxpr, closed.consts, 0)
  out_vars = scoped(0, jaxpr.outvars)
  mutated = _mutated_outputs(out_shape, apply_kwargs, paths)
  for k, v in enumerate(out_vars):
    if k in mutated:
      src = var_nodes[mutated[k]]
      for axis in range(rank(src)):
        t.tie(src, axis, v, axis)
    else:
      t.fix_all(v, "an output of the model")
  _check_used(jaxpr, paths, var_nodes)
  spec, names, carried = spec_from_classes(t, paths, var_nodes, strict)
  signs = sign_flips(t, names, carried, var_nodes, paths, out_vars, mutated,
                     lambda path, name: _axis_of(spec, path, name))
  return spec._replace(signs=signs) if signs else spec


def _axis_of(spec: PermutationSpec, path: str, name: str) -> List[Tuple[str, int]]:
  """The (spec path, axis) pairs of leaf `path` that permutation `name` acts on: one, or
  one per block holding it."""
  held = [block_path(path, k) for k in range(len(spec.blocks[path][1]))] \
      if path in spec.blocks else [path]
  return [(p, spec.axes_to_perm[p].index(name)) for p in held
          if name in spec.axes_to_perm[p]]


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
      inner, _ = sub_jaxpr(eqn)
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


def check_spec(module, variables, spec: PermutationSpec, *example_inputs, key=None,
               trials: int = 3, **apply_kwargs) -> float:
  """Largest absolute change of the outputs of `module.apply(variables, *example_inputs,
  **apply_kwargs)` over `trials` random permutations under `spec` (about 0, up to float
  rounding, for a correct spec). With `mutable=[...]` the updated collections are compared
  with the original updates permuted the same way (they move with their units). Raises
  LmcError if the spec does not fit `variables`."""
  validate_spec(spec, variables)
  key = jax.random.key(0) if key is None else key
  mutable = bool(apply_kwargs.get("mutable"))
  run = jax.jit(lambda v: module.apply(v, *example_inputs, **apply_kwargs))
  base = run(variables)
  sizes = perm_sizes(spec, variables)
  worst = 0.0
  for k in range(trials):
    perm = random_signed_permutation(jax.random.fold_in(key, k), spec, sizes)
    out = run(apply_permutation(spec, perm, variables))
    want = base
    if mutable:  # the updated state, permuted as the variables it replaces
      y, updates = base
      moved = apply_permutation(spec, perm, {**variables, **updates})
      want = (y, {c: moved[c] for c in updates})
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(out)):
      # numpy: a program compiled per leaf shape would cost more than the arithmetic.
      diff = np.asarray(a).astype(np.float32) - np.asarray(b).astype(np.float32)
      worst = max(worst, float(np.max(np.abs(diff), initial=0.0)))
  return worst


def spec_without_prefix(spec: PermutationSpec, prefix: str = "params") -> PermutationSpec:
  """The spec of one collection, its paths relative to it (`params/Dense_0/kernel` ->
  `Dense_0/kernel`), for code that holds the params dict alone."""
  head = prefix.rstrip("/") + "/"
  cut = lambda d: {p[len(head):]: v for p, v in d.items() if p.startswith(head)}
  signs = {name: [(p[len(head):], a) for p, a in pairs if p.startswith(head)]
           for name, pairs in spec.signs.items()}
  return permutation_spec_from_axes(cut(spec.axes_to_perm), cut(spec.views), signs,
                                    cut(spec.blocks))



@functools.lru_cache(maxsize=32)
def network_spec(model, d_in: int) -> PermutationSpec:
  """The spec of a network `model` (one model's whole variables dict, inputs of `d_in`
  features), derived in evaluation mode from its shapes alone."""
  # Shapes alone: derive_spec only traces (no array is made, so nothing is compiled).
  return derive_spec(model, abstract_variables(model, d_in),
                     jax.ShapeDtypeStruct((2, d_in), jnp.float32))


def spec_for_config(config) -> PermutationSpec:
  """The spec of the zoo a `ZooConfig` describes, over every model's whole variables dict:
  derived from its network, whatever the architecture (`mlp_permutation_spec`, the study's
  MLP written out by hand, is the test oracle of the derivation)."""
  info = dataset_info(config.data)
  return network_spec(build_network(config.model, info), info.d_in)
