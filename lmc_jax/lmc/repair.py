"""REPAIR (Jordan et al., 2022): renormalise the hidden units of an interpolated network.

Averaging two networks shrinks the spread of each hidden unit ("variance collapse").
REPAIR measures, on training inputs, the mean and standard deviation of every hidden unit
at the layer that makes it (a "site") in both endpoints, and rescales the interpolated
network's units, site by site in the order the network computes them, so that their
statistics are the same interpolation of the endpoints' statistics: for alpha,
  target = (1 - alpha) * stat_i + alpha * stat_j,
  z -> (z - mean) * (target_std + eps) / (std + eps) + target_mean,
folded into the site's parameters (a Dense or Conv's kernel and bias, a norm's scale and
bias). At alpha 0 and 1 the network is the endpoint itself, left unchanged.

Sites are paths of tapped layers (`nn.layer_taps`), read off the network's permutation spec
(`symmetry.units.repair_sites`): each hidden unit is repaired where it is made, at a Dense
or Conv with a bias, or, after one without, at the LayerNorm or BatchNorm that follows it.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.errors import LmcError
from lmc_jax.host_arrays import to_device
from lmc_jax.lmc.interpolation import Curves, pair_sweep
from lmc_jax.nn.forward import PARAMS, is_variables
from lmc_jax.nn.layer_taps import layer_values, run_tapped
from lmc_jax.symmetry.derive import derive_spec
from lmc_jax.symmetry.units import repair_sites
from lmc_jax.tree_utils import flatten, take, unflatten

EPS = 1e-5
Stats = Dict[str, Tuple[jax.Array, jax.Array]]  # site path -> (mean (w,), std (w,))


def _unit_stats(z) -> Tuple[jax.Array, jax.Array]:
  axes = tuple(range(z.ndim - 1))  # every sample and position; units on the last axis
  return jnp.mean(z, axes), jnp.std(z, axes)


def site_stats(model, tree, x, sites: Sequence[str]) -> Stats:
  """`{site: (mean, std)}` of each site's output units on inputs `x`."""
  return {path: _unit_stats(out) for path, (_, out) in layer_values(model, tree, x, sites).items()}


def repair_network(model, tree, targets: Stats, x):
  """`tree` with each site in `targets` rescaled, in the order the network computes them, so
  that its output units on `x` have the target mean and std (`{site: (mean, std)}`)."""
  corrections: Dict[str, tuple] = {}

  def correct(call, _, out):
    if call.path not in targets:
      return out
    if call.path not in corrections:  # a layer called twice keeps its first correction
      mean, std = _unit_stats(out)
      t_mean, t_std = targets[call.path]
      scale = (t_std + EPS) / (std + EPS)
      corrections[call.path] = (call, scale, t_mean - mean * scale)
    _, scale, shift = corrections[call.path]
    return out * scale + shift

  run_tapped(model, tree, x, correct)
  missing = sorted(set(targets) - set(corrections))
  if missing:
    raise LmcError(f"REPAIR sites {missing} are not layers this network calls; name sites "
                   "from lmc_jax.symmetry.units.repair_sites.")
  return _fold(tree, corrections.values())


def _fold(tree, corrections):
  flat = dict(flatten(tree))
  for call, scale, shift in corrections:
    weight, bias = f"{call.path}/{call.weight}", f"{call.path}/bias"
    if weight == bias or weight not in flat or bias not in flat:
      raise LmcError(f"REPAIR can not fold its correction into {call.path}: it needs a "
                     f"{weight.rsplit('/', 1)[1]} and a bias there; leave that layer out of "
                     "the sites.")
    flat[weight] = flat[weight] * scale  # units on the last axis
    flat[bias] = flat[bias] * scale + shift
  return unflatten(flat)


@dataclasses.dataclass(frozen=True)
class RepairTransform:
  """The `transform` of `pair_sweep` that REPAIRs a chunk of `(pairs * A)` networks at
  `sites` on the inputs it is given (hashable: it keys the sweep's compilation)."""
  sites: Tuple[str, ...]

  def __call__(self, model, mixed, params_i, params_j, alphas, x_stats, from_host=False):
    del from_host  # no loop of its own: one pass over `x_stats`
    stats = jax.vmap(lambda p: site_stats(model, p, x_stats, self.sites))
    si, sj = stats(params_i), stats(params_j)  # per site: (mean, std), each (chunk, w)
    al = alphas.reshape(1, -1, 1)

    def target(a, b):
      return ((1 - al) * a[:, None] + al * b[:, None]).reshape((-1,) + a.shape[1:])

    targets = {s: (target(si[s][0], sj[s][0]), target(si[s][1], sj[s][1])) for s in si}
    return jax.vmap(lambda p, t: repair_network(model, p, t, x_stats))(mixed, targets)


def repaired_pair_sweep(model, params_stack, pairs, x_stats, x, y, alphas=None,
                        sites: Sequence[str] = None, **kwargs) -> Curves:
  """`pair_sweep` with every interpolated network REPAIRed at `sites` (layer paths; by
  default those `symmetry.units.repair_sites` reads off the network's derived spec) on
  inputs `x_stats` `(m, ...)` (training data) before it is evaluated on `(x, y)`."""
  if sites is None:
    if not is_variables(params_stack):  # a bare params stack: sites are read on variables
      params_stack = {PARAMS: params_stack}
    one = take(params_stack, 0)
    sites = repair_sites(derive_spec(model, one, np.asarray(x_stats)[:1]), model, one,
                         np.asarray(x_stats)[:1])
  if not sites:
    raise LmcError("REPAIR was given no layers to repair; this network has no hidden unit "
                   "made by a Dense or Conv with a bias or by a norm after one without.")
  return pair_sweep(model, params_stack, pairs, x, y, alphas,
                    transform=RepairTransform(tuple(sites)),
                    transform_data=to_device(np.asarray(x_stats), jnp.float32), **kwargs)
