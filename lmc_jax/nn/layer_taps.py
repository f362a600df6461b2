"""The hidden units of any Flax network as its built-in layers see them.

Running a module under `flax.linen.intercept_methods`, every call of a built-in layer is
seen with its input and its output, whatever module it sits in. The layers tapped carry
their units on the last axis of their input and output:
- contractions, `nn.Dense` and `nn.Conv`: the input's last axis is contracted with the
  kernel's second-to-last axis, the output's last axis is the kernel's last;
- per-unit affine norms, `nn.LayerNorm` (normalising over the last axis only) and
  `nn.BatchNorm` (axis -1): the output's last axis is that of `scale` and `bias`.

Activation matching correlates the inputs of contractions (the features the next layer
reads); REPAIR renormalises the outputs of the layers that make hidden units.
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple

import flax.linen as nn
import jax

from lmc_jax.nn.forward import PARAMS, apply_eval, is_variables

CONTRACTIONS = (nn.Dense, nn.Conv)
NORMS = (nn.LayerNorm, nn.BatchNorm)


class LayerCall(NamedTuple):
  """One call of a tapped layer, as the tree of the network names its variables."""
  path: str  # '/'-joined path of its variables in the tree, e.g. 'params/block_0/Conv_0'
  kind: str  # 'contraction' or 'norm'
  has_bias: bool
  has_scale: bool  # norms: a per-unit scale (contractions: False)


def _tapped_kind(module, method: str):
  if method != "__call__":
    return None
  if isinstance(module, CONTRACTIONS):
    return "contraction"
  if isinstance(module, nn.LayerNorm) and tuple(_axes(module.reduction_axes)) == (-1,) \
      and tuple(_axes(module.feature_axes)) == (-1,):
    return "norm"
  if isinstance(module, nn.BatchNorm) and tuple(_axes(module.axis)) == (-1,):
    return "norm"
  return None


def _axes(a):
  return a if isinstance(a, (tuple, list)) else (a,)


def _call_of(module, kind: str, tree) -> LayerCall:
  prefix = (PARAMS,) if is_variables(tree) else ()
  if kind == "contraction":
    return LayerCall("/".join(prefix + tuple(module.path)), kind, bool(module.use_bias), False)
  return LayerCall("/".join(prefix + tuple(module.path)), kind, bool(module.use_bias),
                   bool(module.use_scale))


Hook = Callable[[LayerCall, jax.Array, jax.Array], jax.Array]


def run_tapped(model, tree, x, hook: Hook):
  """`apply_eval(model, tree, x)` with `hook(call, layer_input, layer_output)` called on every
  call of a tapped layer, in the order the network makes them; what the hook returns
  replaces the layer's output. Works under jit and vmap (the hook runs at trace time)."""
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    kind = _tapped_kind(context.module, context.method_name)
    if kind is None or not args:
      return out
    return hook(_call_of(context.module, kind, tree), args[0], out)

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


def layer_values(model, tree, x, paths, side: str = "input"):
  """`{path: the layer's input (side='input') or output ('output')}` on inputs `x`, for the
  tapped layers at `paths` (the first call of each), units on the last axis."""
  got = {}

  def record(call, inp, out):
    if call.path in paths and call.path not in got:
      got[call.path] = inp if side == "input" else out
    return out

  run_tapped(model, tree, x, record)
  return got
