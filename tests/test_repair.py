"""REPAIR: endpoints untouched, and repaired units carry the interpolated statistics."""
import jax
import numpy as np

from lmc_jax import host_arrays, tree_utils
from lmc_jax.lmc.interpolation import pair_sweep
from lmc_jax.lmc.repair import repair_network, repaired_pair_sweep, site_stats
from tests.helpers import random_params


def _zoo(layernorm="none"):
  trees = [random_params(jax.random.key(k), (6, 5), d_in=3, d_out=2, layernorm=layernorm)
           for k in range(3)]
  model = trees[0][0]
  return model, tree_utils.stack([t for _, t in trees], host_arrays.stack)  # numpy, per leaf


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 3)).astype(np.float32)
  return x, (x[:, 0] + x[:, 1] > 0).astype(np.int32)


def test_repair_leaves_the_endpoints_unchanged():
  model, stack = _zoo("after_relu")
  x, y = _data()
  pairs = [[0, 1], [2, 0]]
  plain = pair_sweep(model, stack, pairs, x, y)
  repaired = repaired_pair_sweep(model, stack, pairs, x[:40], x, y)
  np.testing.assert_allclose(repaired.loss[:, [0, -1]], plain.loss[:, [0, -1]], rtol=1e-5)
  # and it does change the inside of the line
  assert np.max(np.abs(repaired.loss[:, 5] - plain.loss[:, 5])) > 1e-3


def test_repaired_units_have_the_interpolated_statistics():
  model, stack = _zoo()
  x, _ = _data()
  # Taken and mixed by numpy in float32 (as jax would): no program per leaf shape.
  take = lambda k: jax.tree_util.tree_map(lambda v: np.asarray(v)[k], stack)
  a, b, alpha = take(0), take(1), 0.3
  mixed = jax.tree_util.tree_map(lambda u, v: jax.device_put((1 - alpha) * u + alpha * v), a, b)
  # Targets by hand: numpy means and standard deviations of each endpoint's Dense outputs.
  targets = []
  ha, hb = np.asarray(x, np.float64), np.asarray(x, np.float64)
  for i in range(2):
    za = ha @ np.asarray(a[f"Dense_{i}"]["kernel"]) + np.asarray(a[f"Dense_{i}"]["bias"])
    zb = hb @ np.asarray(b[f"Dense_{i}"]["kernel"]) + np.asarray(b[f"Dense_{i}"]["bias"])
    targets.append(((1 - alpha) * za.mean(0) + alpha * zb.mean(0),
                    (1 - alpha) * za.std(0) + alpha * zb.std(0)))
    ha, hb = np.maximum(za, 0), np.maximum(zb, 0)
  sites = ("Dense_0", "Dense_1")  # the hidden layers of the bare params a and b
  fixed = repair_network(model, mixed, {s: (jax.device_put(m.astype(np.float32)),
                                            jax.device_put(d.astype(np.float32)))
                                        for s, (m, d) in zip(sites, targets)}, jax.device_put(x))
  stats = site_stats(model, fixed, jax.device_put(x), sites)
  assert list(stats) == ["Dense_0", "Dense_1"]
  for (mean, std), (t_mean, t_std) in zip(stats.values(), targets):
    np.testing.assert_allclose(mean, t_mean, atol=1e-4)
    np.testing.assert_allclose(std, t_std, rtol=1e-3, atol=1e-4)
