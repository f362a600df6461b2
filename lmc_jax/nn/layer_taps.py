"""The hidden units of any Flax network as its built-in layers see them.

Running a module under `flax.linen.intercept_methods`, every call of a built-in layer is
seen with its input and its output, whatever module it sits in. Each call says which axes
of its input and output hold units, and which axes of its weight (kernel, or a norm's
scale) they meet:
- contractions: `nn.Dense` and `nn.Conv` (the input's last axis meets the kernel's
  second-to-last, the output's last the kernel's last) and `nn.DenseGeneral` (its `axis`
  meet the kernel's first axes, its `features` the kernel's last ones: attention's
  projections);
- per-unit affine norms: `nn.LayerNorm` (normalising over the last axis only) and
  `nn.BatchNorm` (axis -1), whose output's last axis is that of `scale` and `bias`.

Activation matching correlates the units these layers read and make; REPAIR renormalises
the outputs of the layers that make hidden units.
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax

from lmc_jax.nn.forward import PARAMS, apply_eval, is_variables

CONTRACTIONS = (nn.Dense, nn.Conv, nn.DenseGeneral)
NORMS = (nn.LayerNorm, nn.BatchNorm)


class LayerCall(NamedTuple):
  """One call of a tapped layer, as the tree of the network names its variables."""
  path: str  # '/'-joined path of its variables in the tree, e.g. 'params/block_0/Conv_0'
  kind: str  # 'contraction' or 'norm'
  has_bias: bool
  has_scale: bool  # norms: a per-unit scale (contractions: False)
  weight: str  # the leaf its units meet: 'kernel', or a norm's 'scale' (or 'bias')
  reads: Tuple[Tuple[int, int], ...]  # (input axis, weight axis) pairs, axes negative
  makes: Tuple[Tuple[int, int], ...]  # (output axis, weight axis) pairs, axes negative
  in_shape: Tuple[int, ...] = ()
  out_shape: Tuple[int, ...] = ()


def _axes(a) -> tuple:
  return tuple(a) if isinstance(a, (tuple, list)) else (a,)


def _call_of(module, method: str, tree, x, out) -> Optional[LayerCall]:
  """The call's record, or None for a method or layer that is not tapped."""
  if method != "__call__" or getattr(x, "ndim", None) is None or not hasattr(out, "shape"):
    return None
  call = _layer_call(module, tree, x)
  return None if call is None else call._replace(in_shape=tuple(x.shape),
                                                 out_shape=tuple(out.shape))


def _layer_call(module, tree, x) -> Optional[LayerCall]:
  path = "/".join(((PARAMS,) if is_variables(tree) else ()) + tuple(module.path))
  if isinstance(module, (nn.Dense, nn.Conv)):
    return LayerCall(path, "contraction", bool(module.use_bias), False, "kernel",
                     ((-1, -2),), ((-1, -1),))
  if isinstance(module, nn.DenseGeneral):
    if _axes(module.batch_dims):
      return None
    ins = [a % x.ndim - x.ndim for a in _axes(module.axis)]
    n_in, n_out = len(ins), len(_axes(module.features))
    k = n_in + n_out
    return LayerCall(path, "contraction", bool(module.use_bias), False, "kernel",
                     tuple((a, i - k) for i, a in enumerate(ins)),
                     tuple((o - n_out, n_in + o - k) for o in range(n_out)))
  norm = (isinstance(module, nn.LayerNorm) and _axes(module.reduction_axes) == (-1,)
          and _axes(module.feature_axes) == (-1,)) or \
      (isinstance(module, nn.BatchNorm) and _axes(module.axis) == (-1,))
  if norm and (module.use_scale or module.use_bias):
    return LayerCall(path, "norm", bool(module.use_bias), bool(module.use_scale),
                     "scale" if module.use_scale else "bias", (), ((-1, -1),))
  return None


Hook = Callable[[LayerCall, jax.Array, jax.Array], jax.Array]


def run_tapped(model, tree, x, hook: Hook):
  """`apply_eval(model, tree, x)` with `hook(call, layer_input, layer_output)` called on every
  call of a tapped layer, in the order the network makes them; what the hook returns
  replaces the layer's output. Works under jit and vmap (the hook runs at trace time)."""
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    call = _call_of(context.module, context.method_name, tree, args[0], out) if args else None
    return out if call is None else hook(call, args[0], out)

  with nn.intercept_methods(interceptor):
    return apply_eval(model, tree, x)


def layer_calls(model, tree, x) -> List[LayerCall]:
  """The tapped layers `model` calls on inputs like `x` (one model's tree), in call order,
  each once. Costs no computation (shapes only)."""
  calls: List[LayerCall] = []

  def record(call, _, out):
    if call not in calls:
      calls.append(call)
    return out

  jax.eval_shape(lambda t, xb: run_tapped(model, t, xb, record), tree, x)
  return calls


def layer_values(model, tree, x, paths) -> Dict[str, Tuple[jax.Array, jax.Array]]:
  """`{path: (input, output)}` of the tapped layers at `paths` (the first call of each) on
  inputs `x`."""
  got = {}

  def record(call, inp, out):
    if call.path in paths and call.path not in got:
      got[call.path] = (inp, out)
    return out

  run_tapped(model, tree, x, record)
  return got
