import numpy as np
import pytest

from lmc_jax.errors import LmcError
from lmc_jax.lmc.measures import (
  epsilon,
  loss_barrier,
  pair_matrix,
  quartiles,
  rebasin_barrier,
  single_linkage_order,
)

ALPHAS = np.linspace(0, 1, 11)


def test_measures_on_hand_made_curves():
  # A flat line: every measure is zero.
  flat = np.full(11, 0.3)
  # A bump of height 1 at the midpoint between endpoints 0.2 and 0.4.
  bump = np.array([0.2, 0.3, 0.5, 0.8, 1.0, 1.2, 1.0, 0.8, 0.6, 0.5, 0.4])
  # A line falling from 1 to 0 linearly: chord equals the curve.
  line = 1 - ALPHAS
  # Convex dip below both endpoints.
  dip = np.array([0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5])
  curves = np.stack([flat, bump, line, dip])
  np.testing.assert_allclose(epsilon(curves, ALPHAS), [0, 1.2 - 0.4, 0, 0], atol=1e-12)
  # Definition 5 at alpha 0.5: 1.2 - (0.5 * 0.2 + 0.5 * 0.4) = 0.9.
  np.testing.assert_allclose(loss_barrier(curves, ALPHAS), [0, 0.9, 0, 0], atol=1e-12)
  np.testing.assert_allclose(rebasin_barrier(curves, ALPHAS), [0, 1.2 - 0.3, 0.5, 0], atol=1e-12)


def test_barrier_uses_the_chord_not_the_mean():
  # Skewed endpoints: the peak at alpha 0.1 sits just above the chord, far above the mean.
  curve = np.array([0.0, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 2.0])
  chord = 2.0 * ALPHAS
  assert loss_barrier(curve, ALPHAS) == pytest.approx(np.max(curve - chord))
  assert loss_barrier(curve, ALPHAS) == pytest.approx(0.8)
  assert rebasin_barrier(curve, ALPHAS) == pytest.approx(1.0)
  assert epsilon(curve, ALPHAS) == pytest.approx(0.0)


def test_measures_refuse_alphas_without_endpoints():
  with pytest.raises(LmcError, match="from 0 to 1"):
    epsilon(np.zeros(3), np.array([0.1, 0.5, 0.9]))
  with pytest.raises(LmcError, match="points"):
    epsilon(np.zeros(4), np.linspace(0, 1, 3))


def test_pair_matrix_and_quartiles():
  m = pair_matrix([1.0, 2.0, 3.0], [[0, 1], [0, 2], [1, 2]], 3)
  np.testing.assert_array_equal(m, [[0, 1, 2], [1, 0, 3], [2, 3, 0]])
  q = quartiles([1, 2, 3, 4, 5, np.nan])
  assert q == {"q1": 2.0, "median": 3.0, "q3": 4.0, "n": 5}


def test_single_linkage_groups_clusters_together():
  # Two clusters {0, 2, 4} and {1, 3}: small distances inside, large across.
  n = 5
  m = np.full((n, n), 5.0)
  for group in ([0, 2, 4], [1, 3]):
    for i in group:
      for j in group:
        m[i, j] = 0.1
  np.fill_diagonal(m, 0)
  order = list(single_linkage_order(m))
  pos = {k: order.index(k) for k in range(n)}
  assert sorted(pos[k] for k in (0, 2, 4)) in ([0, 1, 2], [2, 3, 4])
