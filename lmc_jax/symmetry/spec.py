"""`PermutationSpec`: which hidden-unit permutation acts on which axis of which leaf.

Params are addressed by `/`-joined Flax paths (`Dense_0/kernel`). A spec is declared by
one map, `axes_to_perm[path] = (perm name or None for each axis)`; the inverse map
`perm_to_axes` is derived from it. A permutation is a dict `{perm name: int array (n,)}`,
and applying it means `leaf = take(leaf, perm, axis)` on every axis the spec assigns.
The permuted network computes the same function as the original.

Signs: where a unit's activation is odd (tanh, or none before a linear layer) the unit may
also flip its sign. `signs[perm]` lists the (path, axis) pairs a flip negates; a
permutation of such a group is then signed: entry `i` of `perm[p]` is `j` (B's unit j
moves to i) or `~j` (= -j-1: the same, with unit j negated on every axis in `signs[p]`).
Plain permutations (no negative entries) are the signed ones with every sign +1, so
everything below takes both with no extra argument.

A leaf may carry a view (`views[path]` = a shape of as many elements): its axes are then
those of `leaf.reshape(view)`, so a permutation can act on a factor of a flattened axis
(the channels of a conv feature map flattened into a Dense layer's input: view
`(H, W, C, out)` of the `(H*W*C, out)` kernel). Every function here reshapes to the view
and back; nothing else needs to know.

A leaf may also be made of blocks (`blocks[path] = (axis, sizes)`): its axis `axis` is the
concatenation of blocks of `sizes` (a DenseNet layer reading its predecessors' channels
concatenated, a U-Net decoder reading its skip beside the upsampled map), each with its
own permutation. The spec then addresses block k as a leaf of its own, `f"{path}[{k}]"`
(`block_path`), the slice of the leaf holding it, with its own axes (and view); every
function here splits such leaves into their blocks and joins them back.
"""
from __future__ import annotations

import functools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax import host_arrays
from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import host_view, like, to_device
from lmc_jax.tree_utils import flatten, unflatten

Axes = Tuple[Optional[str], ...]
# Collections whose leaves move with their units but say nothing about what a unit computes
# (BatchNorm's running statistics): permuted with everything else, never matched on.
STATE_COLLECTIONS = ("batch_stats",)


class PermutationSpec(NamedTuple):
  axes_to_perm: Dict[str, Axes]  # leaf path -> perm name (or None) per axis (of its view)
  perm_to_axes: Dict[str, Tuple[Tuple[str, int], ...]]  # perm name -> ((path, axis), ...)
  views: Dict[str, Tuple[int, ...]] = {}  # leaf path -> the shape its axes refer to
  signs: Dict[str, Tuple[Tuple[str, int], ...]] = {}  # perm -> (path, axis) a flip negates
  blocks: Dict[str, Tuple[int, Tuple[int, ...]]] = {}  # leaf path -> (axis, block sizes)


def block_path(path: str, k: int) -> str:
  """The spec's name of block `k` of leaf `path` (see `PermutationSpec.blocks`)."""
  return f"{path}[{k}]"


def split_blocks(spec: PermutationSpec, flat: Dict[str, object]) -> Dict[str, object]:
  """`flat` (path -> leaf) with every leaf the spec holds as blocks replaced by its blocks
  (`block_path`); numpy or jax, the leaves' own kind."""
  return split_blocks_batched(spec, flat, 0)


def split_blocks_batched(spec: PermutationSpec, flat, batch_dims: int):
  """`split_blocks` of leaves with `batch_dims` leading axes (a zoo's model axis)."""
  if not spec.blocks:
    return flat
  out = {}
  for path, leaf in flat.items():
    if path not in spec.blocks:
      out[path] = leaf
      continue
    axis, sizes = spec.blocks[path]
    xp = jnp if isinstance(leaf, jax.Array) else np
    pieces = xp.split(leaf, np.cumsum(sizes)[:-1].tolist(), axis=axis + batch_dims)
    out.update({block_path(path, k): piece for k, piece in enumerate(pieces)})
  return out


def join_blocks(spec: PermutationSpec, flat: Dict[str, object], like=None) -> Dict[str, object]:
  """The inverse of `split_blocks`: of the leaves that `like` (a flat dict; default all)
  holds whole, the blocks in `flat` joined back."""
  whole = [p for p in spec.blocks if like is None or p in like]
  if not whole:
    return flat
  parts = {block_path(p, k): p for p in whole for k in range(len(spec.blocks[p][1]))}
  out = {p: v for p, v in flat.items() if p not in parts}
  for path in whole:
    axis, sizes = spec.blocks[path]
    pieces = [flat[block_path(path, k)] for k in range(len(sizes))]
    xp = jnp if any(isinstance(v, jax.Array) for v in pieces) else np
    out[path] = xp.concatenate(pieces, axis=axis)
  return out


def permutation_spec_from_axes(axes_to_perm: Dict[str, Axes],
                               views: Optional[Dict[str, Tuple[int, ...]]] = None,
                               signs: Optional[Dict[str, Sequence[Tuple[str, int]]]] = None,
                               blocks: Optional[Dict[str, Tuple[int, Sequence[int]]]] = None
                               ) -> PermutationSpec:
  """The spec of `axes_to_perm` (and `views`, leaf path -> shape, for leaves whose axes are
  those of a reshape; `signs`, perm -> the (path, axis) pairs a sign flip of its units
  negates, for groups that may flip; `blocks`, leaf path -> (axis, block sizes), for
  leaves whose blocks `axes_to_perm` and `views` name as `block_path(path, k)`)."""
  perm_to_axes: Dict[str, list] = {}
  for path, axes in axes_to_perm.items():
    for axis, perm in enumerate(axes):
      if perm is not None:
        perm_to_axes.setdefault(perm, []).append((path, axis))
  views = {p: tuple(int(n) for n in v) for p, v in (views or {}).items()}
  signs = {p: tuple(sorted((str(path), int(a)) for path, a in v))
           for p, v in (signs or {}).items() if v}
  for p, pairs in signs.items():
    wrong = [pa for pa in pairs if pa not in perm_to_axes.get(p, ())]
    if wrong:
      raise LmcError(f"The permutation spec lets {p} flip signs on {wrong}, which are not axes "
                     f"of {p}; list only axes the permutation acts on.")
  blocks = {p: (int(a), tuple(int(n) for n in sizes)) for p, (a, sizes) in (blocks or {}).items()}
  return PermutationSpec(dict(axes_to_perm), {p: tuple(v) for p, v in perm_to_axes.items()},
                         views, signs, blocks)


def spec_key(spec: PermutationSpec) -> tuple:
  """A hashable form of `spec` (a static argument of jitted functions); `spec_from_key`
  inverts it."""
  return tuple(tuple(sorted((k, _frozen(v)) for k, v in field.items()))
               for field in (spec.axes_to_perm, spec.views, spec.signs, spec.blocks))


def _frozen(value):
  """Lists (a spec written by hand may hold them) as tuples, all the way down."""
  return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def spec_from_key(key: tuple) -> PermutationSpec:
  axes, views, signs, blocks = key
  return permutation_spec_from_axes(dict(axes), dict(views), dict(signs), dict(blocks))


def without_signs(spec: PermutationSpec) -> PermutationSpec:
  """The same spec with no sign freedom (methods that search plain permutations only)."""
  return spec._replace(signs={})


def unit_index(v):
  """The units a signed permutation takes (`~j` -> j); numpy or jax, as given."""
  return (jnp if isinstance(v, jax.Array) else np).where(v < 0, -v - 1, v)


def unit_sign(v):
  """+1 or -1 per entry of a signed permutation."""
  return (jnp if isinstance(v, jax.Array) else np).where(v < 0, -1, 1)


def signed_permutation(index, sign):
  """The signed permutation taking units `index` with signs `sign` (+-1 each)."""
  return (jnp if isinstance(index, jax.Array) else np).where(sign < 0, -index - 1, index)


def leaf_shape(spec: PermutationSpec, path: str, shape) -> Tuple[int, ...]:
  """The shape the spec's axes of leaf `path` refer to: its view, or `shape` itself."""
  return spec.views.get(path, tuple(shape))


def axis_groups(spec: PermutationSpec, path: str, shape) -> Optional[List[List[int]]]:
  """For each axis of a leaf of `shape`, the axes of its view it is split into (`[[0], [1],
  ...]` without a view); None where the view does not refine the shape axis by axis."""
  shape = tuple(shape)
  view = spec.views.get(path)
  if view is None:
    return [[a] for a in range(len(shape))]
  groups, j = [], 0
  for n in shape:
    group, size = [], 1
    while j < len(view) and (size < n or (not group and n == 1 and view[j] == 1)):
      group.append(j)
      size *= view[j]
      j += 1
    if size != n:
      return None
    groups.append(group)
  if groups and j < len(view) and all(view[k] == 1 for k in range(j, len(view))):
    groups[-1].extend(range(j, len(view)))
    j = len(view)
  return groups if j == len(view) else None


def view_leaves(spec: PermutationSpec, flat: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
  """`flat` (path -> one model's leaf) split into blocks (`split_blocks`) and every leaf
  that has a view reshaped to it."""
  flat = split_blocks(spec, flat)
  return {k: v.reshape(spec.views[k]) if k in spec.views else v for k, v in flat.items()}


def mlp_permutation_spec(num_hidden: int, layernorm: bool = False,
                         collection: str = "") -> PermutationSpec:
  """Spec of `models.MLP` with `num_hidden` hidden layers, written out by hand (the oracle
  `derive_spec` is tested against): of its params dict, or with `collection="params"` of its
  whole variables dict, as a zoo stores it.

  Permutation `P_i` of hidden layer i acts on the output axis of `Dense_i` (kernel axis
  1, bias), on `LayerNorm_i` scale and bias (either position: LayerNorm acts per unit
  given the layer's statistics, which a permutation leaves unchanged), and on the input
  axis of `Dense_{i+1}` (kernel axis 0).
  """
  head = f"{collection}/" if collection else ""
  axes: Dict[str, Axes] = {}
  for i in range(num_hidden + 1):
    p_in = f"P_{i - 1}" if i > 0 else None
    p_out = f"P_{i}" if i < num_hidden else None
    axes[f"{head}Dense_{i}/kernel"] = (p_in, p_out)
    axes[f"{head}Dense_{i}/bias"] = (p_out,)
    if layernorm and i < num_hidden:
      axes[f"{head}LayerNorm_{i}/scale"] = (p_out,)
      axes[f"{head}LayerNorm_{i}/bias"] = (p_out,)
  return permutation_spec_from_axes(axes)


def is_state(path: str) -> bool:
  """True for a leaf of a state collection (`batch_stats/...`)."""
  return path.split("/", 1)[0] in STATE_COLLECTIONS


def matched_axes(spec: PermutationSpec, p: str) -> Tuple[Tuple[str, int], ...]:
  """The (path, axis) pairs of permutation `p` that weight matching compares: all but
  those of state collections."""
  return tuple((path, axis) for path, axis in spec.perm_to_axes[p] if not is_state(path))


def perm_sizes(spec: PermutationSpec, params, batch_dims: int = 0) -> Dict[str, int]:
  """Size of each permutation, read off `params` (after `batch_dims` leading axes)."""
  flat = split_blocks_batched(spec, flatten(params), batch_dims)
  return {p: leaf_shape(spec, path, flat[path].shape[batch_dims:])[axis]
          for p, ((path, axis), *_) in spec.perm_to_axes.items()}


def validate_spec(spec: PermutationSpec, params, batch_dims: int = 0) -> None:
  """Raises LmcError unless the spec covers exactly the leaves of `params`, with the right
  number of axes, and every axis of one permutation has the same length."""
  flat = flatten(params)
  for path, (axis, sizes) in spec.blocks.items():
    shape = flat[path].shape[batch_dims:] if path in flat else None
    if shape is None or not 0 <= axis < len(shape) or sum(sizes) != shape[axis]:
      raise LmcError(f"The permutation spec holds {path} as blocks of {tuple(sizes)} on its "
                     f"axis {axis}, which its shape {shape} does not have; fix the blocks of "
                     f"{path}.")
  flat = split_blocks_batched(spec, flat, batch_dims)
  missing = sorted(set(flat) - set(spec.axes_to_perm))
  extra = sorted(set(spec.axes_to_perm) - set(flat))
  if missing or extra:
    raise LmcError(f"The permutation spec does not fit the params: leaves without a spec "
                   f"{missing}, spec entries without a leaf {extra}; build the spec for this "
                   "model (e.g. with layernorm matching the zoo config).")
  sizes: Dict[str, int] = {}
  for path, axes in spec.axes_to_perm.items():
    shape = flat[path].shape[batch_dims:]
    if path in spec.views:
      view = spec.views[path]
      if int(np.prod(view)) != int(np.prod(shape)):
        raise LmcError(f"The permutation spec views {path}, of shape {tuple(shape)}, as "
                       f"{tuple(view)}, which has another number of elements; fix the view of "
                       f"{path}.")
      shape = view
    if len(axes) != len(shape):
      raise LmcError(f"The permutation spec gives {len(axes)} axes for {path}, whose shape is "
                     f"{tuple(shape)}; fix the spec entry for {path}.")
    for axis, p in enumerate(axes):
      if p is None:
        continue
      if sizes.setdefault(p, shape[axis]) != shape[axis]:
        raise LmcError(f"Permutation {p} acts on axes of lengths {sizes[p]} and {shape[axis]} "
                       f"(at {path} axis {axis}); every axis of one permutation must have the "
                       "same length.")


def permute_leaf(spec: PermutationSpec, perm: Dict[str, jax.Array], path: str, leaf,
                 skip: Optional[str] = None):
  """Leaf `path` with every permutation the spec assigns to its axes applied, except
  `skip` (weight matching holds the one it solves for unapplied). numpy leaves stay
  numpy; jax arrays and tracers go through `jnp.take`, so it works under jit/vmap, except
  where the leaf and its permutations are all in host memory (`host_arrays`): numpy permutes
  those, with nothing compiled per leaf shape. A leaf with a view is permuted in its view and
  given back in the shape it came in."""
  if isinstance(leaf, jax.Array):
    used = {p for p in spec.axes_to_perm[path] if p is not None and p != skip}
    views = {p: host_view(perm[p]) for p in used}
    view = host_view(leaf)
    if view is not None and all(v is not None for v in views.values()):
      return like(permute_leaf(spec, views, path, view, skip), leaf)
  shape = leaf.shape
  if path in spec.views:
    leaf = leaf.reshape(spec.views[path])
  for axis, p in enumerate(spec.axes_to_perm[path]):
    if p is not None and p != skip:
      xp = jnp if isinstance(leaf, jax.Array) else np
      leaf = xp.take(leaf, unit_index(perm[p]), axis=axis)
      if (path, axis) in spec.signs.get(p, ()):
        sign = unit_sign(perm[p]).astype(leaf.dtype)
        leaf = leaf * sign.reshape((-1,) + (1,) * (leaf.ndim - axis - 1))
  return leaf.reshape(shape)


def apply_permutation(spec: PermutationSpec, perm: Dict[str, jax.Array], params):
  """Params of one model with hidden units reordered: `new = take(old, perm[p], axis)`
  on every axis the spec assigns, and negated where a signed permutation flips a unit on
  the axes in `spec.signs`. Works on numpy and jax arrays, and under jit/vmap."""
  given = flatten(params)
  return unflatten(join_blocks(spec, {path: permute_leaf(spec, perm, path, leaf)
                                      for path, leaf in split_blocks(spec, given).items()},
                               given))


def head_group(spec: PermutationSpec, p: str) -> Optional[str]:
  """The one other group every leaf of `p` also carries, or None: for the features inside
  attention's heads, the heads (a map per head mixes each head's features on its own)."""
  common = None
  for path, _ in spec.perm_to_axes[p]:
    here = {q for q in spec.axes_to_perm[path] if q is not None and q != p}
    common = here if common is None else common & here
  return next(iter(common)) if common is not None and len(common) == 1 else None


def mix_axis(mat, leaf, path: str, axis: int, spec: PermutationSpec, p: str):
  """`leaf` (in its view) mixed along `axis` by `mat`: `new = mat @ old` for `mat` `(n, n)`;
  for `mat` `(H, n, n)`, one map per unit of `head_group(spec, p)` (`new[h] = mat[h] @
  old[h]`, h along the leaf's axis of that group). numpy or jax, as `leaf` is."""
  xp = jnp if isinstance(leaf, jax.Array) or isinstance(mat, jax.Array) else np
  if mat.ndim == 2:  # axes moved by numpy where in host memory (exact: nothing compiled)
    return host_arrays.moveaxis(xp.tensordot(mat, leaf, axes=([1], [axis])), 0, axis)
  heads = spec.axes_to_perm[path].index(head_group(spec, p))
  moved = host_arrays.moveaxis(leaf, (heads, axis), (0, 1))
  return host_arrays.moveaxis(xp.einsum("hij,hj...->hi...", mat, moved), (0, 1), (heads, axis))


def apply_soft_permutation(spec: PermutationSpec, mats: Dict[str, jax.Array], params):
  """Params mixed by matrices `mats[p]` `(n, n)` on every axis permutation p acts on:
  `new = mats[p] @ old` along that axis. For the matrix of a permutation `perm`
  (`mats[p][i, perm[i]] = 1`) this is `apply_permutation`; for a doubly stochastic matrix
  it is the soft relaxation Sinkhorn matching optimises. A matrix `(H, n, n)` mixes each
  unit of the group's `head_group` on its own (`mix_axis`). Groups without a matrix are
  left as they are. Leaves in host memory are reshaped, and their axes moved, by numpy."""
  out, given = {}, flatten(params)
  mats = {p: to_device(m) for p, m in mats.items()}  # once, not once per leaf it acts on
  for path, leaf in split_blocks(spec, given).items():
    shape = leaf.shape
    leaf = to_device(host_arrays.reshape(leaf, leaf_shape(spec, path, shape)))
    for axis, p in enumerate(spec.axes_to_perm[path]):
      if p in mats:
        leaf = mix_axis(mats[p], leaf, path, axis, spec, p)
    out[path] = host_arrays.reshape(leaf, shape)
  return unflatten(join_blocks(spec, out, given))


def identity_permutation(sizes: Dict[str, int]) -> Dict[str, np.ndarray]:
  return {p: np.arange(n) for p, n in sizes.items()}


def random_permutation(key, sizes: Dict[str, int]) -> Dict[str, np.ndarray]:
  """A uniformly random permutation per name, from a jax key."""
  keys = jax.random.split(key, len(sizes))
  return {p: np.asarray(jax.random.permutation(k, n))
          for k, (p, n) in zip(keys, sorted(sizes.items()))}


def random_signed_permutation(key, spec: PermutationSpec, sizes: Dict[str, int]
                              ) -> Dict[str, np.ndarray]:
  """A random permutation per name, with random signs on the groups that may flip."""
  perm = random_permutation(jax.random.fold_in(key, 0), sizes)
  for k, p in enumerate(sorted(spec.signs)):
    flip = np.asarray(jax.random.bernoulli(jax.random.fold_in(key, k + 1), 0.5, (sizes[p],)))
    perm[p] = signed_permutation(perm[p], np.where(flip, -1, 1))
  return perm


def invert_permutation(perm: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """`apply(invert(P), apply(P, theta)) == theta` (signed permutations too)."""
  out = {}
  for p, v in perm.items():
    v = np.asarray(v)
    back = np.argsort(unit_index(v))
    out[p] = signed_permutation(back, unit_sign(v)[back])
  return out


def compose_permutations(outer: Dict[str, np.ndarray], inner: Dict[str, np.ndarray]):
  """`apply(compose(outer, inner), theta) == apply(outer, apply(inner, theta))` (signed
  permutations too: unit k takes inner's unit at outer's position, with both signs)."""
  out = {}
  for p in outer:
    o, i = np.asarray(outer[p]), np.asarray(inner[p])
    taken = i[unit_index(o)]
    out[p] = signed_permutation(unit_index(taken), unit_sign(o) * unit_sign(taken))
  return out


def permute_zoo(spec: PermutationSpec, perms: Sequence[Dict[str, np.ndarray]], params_stack):
  """Applies `perms[k]` to model k of a stacked zoo; returns the new stack (jax arrays).
  One compiled program per spec and shapes, not a dispatch (and a compile) per leaf."""
  return _each_model(apply_permutation, spec_key(spec), _stacked(perms), params_stack)


def _stacked(per_model: Sequence[Dict[str, object]], dtype=None) -> Dict[str, object]:
  """`per_model[k][p]` stacked on axis 0 for every name p: on the host where they all are
  there (no compiled stack per shape), else on the device (jax arrays, tracers)."""
  out = {}
  for p in per_model[0]:
    values = [m[p] for m in per_model]
    xp = jnp if any(isinstance(v, jax.Array) for v in values) else np
    out[p] = xp.stack([xp.asarray(v, dtype) for v in values])
  return out


@functools.partial(jax.jit, static_argnums=(0, 1))
def _each_model(apply, key: tuple, stacked: Dict[str, jax.Array], params_stack):
  """`apply(spec, stacked[k], params of model k)` for every model k, as one program per
  `apply`, spec and shapes."""
  spec = spec_from_key(key)
  return jax.vmap(lambda per_model, th: apply(spec, per_model, th))(stacked, params_stack)


def orient_zoo(spec: PermutationSpec, perms: Sequence[Dict[str, np.ndarray]],
               maps: Optional[Sequence[Dict[str, np.ndarray]]], params_stack):
  """`permute_zoo`, then model k's groups in `maps[k]` (name -> orthogonal `(n, n)`) mixed
  by them (`apply_soft_permutation`, in full float32); `maps` None or empty: permutations
  only. A method that rotates a group leaves its permutation the identity, so the order of
  the two does not matter."""
  out = permute_zoo(spec, perms, params_stack)
  if not maps or not maps[0]:
    return out
  with jax.default_matmul_precision("float32"):  # part of the compiled program's key
    return _each_model(apply_soft_permutation, spec_key(spec), _stacked(maps, np.float32), out)
