"""Running one network: its whole Flax variables dict, in evaluation or training mode.

A zoo stores, per model, the whole variables dict (`{"params": ..., "batch_stats": ...}`).
The helpers here also take a bare params dict (a tree without a top-level `params` key),
as a user's own code often holds one. Networks whose `__call__` takes `train` get
`train=False` in evaluation and `train=True` (with their state collections mutable) in
training.

A network may offer more than its `__call__`: `linear_first_layer` below is what the pair
sweep asks of it, so that no code outside `nn` needs to know which network it runs.
"""
from __future__ import annotations

import functools
import inspect
from typing import NamedTuple, Optional, Tuple

PARAMS = "params"


def is_variables(tree) -> bool:
  """True for a whole Flax variables dict, False for a bare params dict."""
  return isinstance(tree, dict) and PARAMS in tree


def split_tree(tree) -> Tuple[dict, dict]:
  """(params, state): state holds every collection but params (empty for a params dict)."""
  if is_variables(tree):
    return tree[PARAMS], {k: v for k, v in tree.items() if k != PARAMS}
  return tree, {}


def join_tree(params, state: dict, like) -> dict:
  """The tree `split_tree(like)` came from, with new params and state."""
  return {PARAMS: params, **state} if is_variables(like) else params


@functools.lru_cache(maxsize=None)
def takes_train(module_type) -> bool:
  """Whether a module class's `__call__` has a `train` argument."""
  try:
    return "train" in inspect.signature(module_type.__call__).parameters
  except (TypeError, ValueError):
    return False


def apply_eval(model, tree, x, **kwargs):
  """Logits `(n, d_out)` of one model in evaluation mode (running statistics); `kwargs` go
  to its `__call__`."""
  variables = tree if is_variables(tree) else {PARAMS: tree}
  if takes_train(type(model)):
    return model.apply(variables, x, train=False, **kwargs)
  return model.apply(variables, x, **kwargs)


class LinearFirstLayer(NamedTuple):
  """What a network offers whose first layer reads the raw inputs and is linear in its own
  parameters: the pair sweep then computes that layer's output for the two ends of a line
  only and interpolates it, instead of once per alpha (for MNIST's 784 inputs that layer
  is most of the work)."""
  kernel: Tuple[str, ...]  # path of its kernel `(d_in, w)` in the variables dict
  bias: Tuple[str, ...]  # path of its bias `(w,)`
  precision: str  # of its matmul (`nn.precision`)
  keyword: str  # the `__call__` keyword that takes its output `(n, w)` instead


def linear_first_layer(model) -> Optional[LinearFirstLayer]:
  """The `LinearFirstLayer` a network offers through a method of that name, or None."""
  offer = getattr(type(model), "linear_first_layer", None)
  return offer(model) if callable(offer) else None


def apply_train(model, params, state: dict, x):
  """(logits, new state) of one model in training mode: batch statistics, and the state
  collections (BatchNorm's running statistics) updated."""
  variables = {PARAMS: params, **state}
  if not takes_train(type(model)):
    return model.apply(variables, x), state
  if not state:
    return model.apply(variables, x, train=True), state
  logits, updates = model.apply(variables, x, train=True, mutable=list(state))
  return logits, {**state, **updates}
