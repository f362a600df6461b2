"""REPAIR (Jordan et al., 2022): renormalise the hidden units of an interpolated network.

Averaging two networks shrinks the spread of each hidden unit's pre-activation ("variance
collapse"). REPAIR measures, on training inputs, the mean and standard deviation of every
hidden unit's pre-activation (the output of `Dense_i`) in both endpoints, and rescales the
interpolated network's units, layer by layer, so that their statistics are the same
interpolation of the endpoints' statistics: for alpha,
  target = (1 - alpha) * stat_i + alpha * stat_j,
  z -> (z - mean) * (target_std + eps) / (std + eps) + target_mean,
folded into `Dense_i`'s kernel and bias. At alpha 0 and 1 the network is the endpoint itself,
so the endpoints are left unchanged.
"""
from __future__ import annotations

from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.lmc.interpolation import Curves, pair_sweep

EPS = 1e-5


def preactivation_stats(model, params, x) -> List[Tuple[jax.Array, jax.Array]]:
  """`[(mean (w_i,), std (w_i,))]` of each hidden layer's pre-activation on inputs `x`."""
  _, state = model.apply({"params": params}, x, capture_intermediates=True)
  stats = []
  for i in range(len(model.hidden)):
    z = state["intermediates"][f"Dense_{i}"]["__call__"][0]
    stats.append((jnp.mean(z, 0), jnp.std(z, 0)))
  return stats


def repair_network(model, params, targets, x):
  """`params` with each hidden layer rescaled, in order, so that its pre-activation on `x`
  has the mean and std of `targets` `[(mean (w_i,), std (w_i,))]`."""
  params = dict(params)
  for i, (t_mean, t_std) in enumerate(targets):
    mean, std = preactivation_stats(model, params, x)[i]
    scale = (t_std + EPS) / (std + EPS)
    dense = params[f"Dense_{i}"]
    params[f"Dense_{i}"] = {"kernel": dense["kernel"] * scale,
                            "bias": (dense["bias"] - mean) * scale + t_mean}
  return params


def _repair_chunk(model, mixed, params_i, params_j, alphas, x_stats):
  """The `transform` of `pair_sweep`: REPAIR for a chunk of `(pairs * A)` networks."""
  stats = jax.vmap(lambda p: preactivation_stats(model, p, x_stats))
  si, sj = stats(params_i), stats(params_j)  # per layer: (mean, std), each (chunk, w)
  al = alphas.reshape(1, -1, 1)

  def target(a, b):
    return ((1 - al) * a[:, None] + al * b[:, None]).reshape((-1,) + a.shape[1:])

  targets = [(target(mi, mj), target(di, dj)) for (mi, di), (mj, dj) in zip(si, sj)]
  return jax.vmap(lambda p, t: repair_network(model, p, t, x_stats))(mixed, targets)


def repaired_pair_sweep(model, params_stack, pairs, x_stats, x, y, alphas=None,
                        **kwargs) -> Curves:
  """`pair_sweep` with every interpolated network REPAIRed on inputs `x_stats` `(m, d_in)`
  (training data) before it is evaluated on `(x, y)`."""
  return pair_sweep(model, params_stack, pairs, x, y, alphas, transform=_repair_chunk,
                    transform_data=jnp.asarray(np.asarray(x_stats), jnp.float32), **kwargs)
