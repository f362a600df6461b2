import jax
import numpy as np
import pytest

from lmc_jax.errors import LmcError
from lmc_jax.lmc.loss_plane import plane_basis, plane_grid, plane_metrics
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.symmetry.spec import flatten
from tests.helpers import random_params


def _data(n=40, d=3, classes=3):
  rng = np.random.default_rng(0)
  return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def _loss(model, theta, x, y):
  stack = jax.tree_util.tree_map(lambda v: np.asarray(v)[None], theta)
  return float(evaluate_zoo(model, stack, x, y)[0][0])


def _point(basis, px, py):
  """origin + px e1 + py e2, by numpy in float32 (as jax would): no program per leaf shape."""
  px, py = np.float32(px), np.float32(py)
  return jax.tree_util.tree_map(lambda o, a, b: np.asarray(o) + px * np.asarray(a)
                                + py * np.asarray(b), basis.origin, basis.e1, basis.e2)


def test_corners_of_the_plane_are_the_three_networks():
  nets = [random_params(jax.random.key(k), (6,), d_out=3) for k in range(3)]
  model = nets[0][0]
  x, y = _data()
  grid = plane_grid(model, nets[0][1], nets[1][1], nets[2][1], x, y, resolution=5)
  want = [_loss(model, n[1], x, y) for n in nets]
  np.testing.assert_allclose(grid.corner_loss, want, rtol=1e-4)
  assert grid.loss.shape == (5, 5)
  assert grid.xs.min() < 0 < grid.corners[1, 0] < grid.xs.max()


def test_basis_is_orthonormal_and_points_match_a_plain_combination():
  nets = [random_params(jax.random.key(k), (4, 5), d_out=3)[1] for k in range(3)]
  model = random_params(jax.random.key(0), (4, 5), d_out=3)[0]
  basis = plane_basis(*nets)
  flat = lambda t: np.concatenate(
      [np.ravel(v) for _, v in sorted(flatten(t).items())]).astype(np.float64)
  e1, e2 = flat(basis.e1), flat(basis.e2)
  assert e1 @ e1 == pytest.approx(1, abs=1e-5) and e2 @ e2 == pytest.approx(1, abs=1e-5)
  assert abs(e1 @ e2) < 1e-5
  x, y = _data()
  pt = np.array([[0.3, -1.7]])
  theta = _point(basis, 0.3, -1.7)
  loss, _ = plane_metrics(model, basis, pt, x, y, chunk=1)
  assert loss[0] == pytest.approx(_loss(model, theta, x, y), rel=1e-4)


def test_degenerate_planes_are_refused():
  _, a = random_params(jax.random.key(0), (4,))
  _, b = random_params(jax.random.key(1), (4,))
  with pytest.raises(LmcError, match="identical"):
    plane_basis(a, a, b)
  mid = jax.tree_util.tree_map(lambda u, v: 0.5 * (np.asarray(u) + np.asarray(v)), a, b)
  with pytest.raises(LmcError, match="on the line"):
    plane_basis(a, b, mid)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_every_chunking_of_the_points_gives_each_points_own_loss(chunk):
  """Chunks of one point evaluate one network (no stack); 2 does not divide 5 (padding)."""
  nets = [random_params(jax.random.key(k), (4, 5), d_out=3)[1] for k in range(3)]
  model = random_params(jax.random.key(0), (4, 5), d_out=3)[0]
  basis = plane_basis(*nets)
  x, y = _data()
  pts = np.array([[0.3, -1.7], [0.0, 0.0], [1.1, 0.4], [-0.5, 2.0], [2.5, -0.2]])
  loss, _ = plane_metrics(model, basis, pts, x, y, chunk=chunk)
  expected = [_loss(model, _point(basis, px, py), x, y) for px, py in pts]
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
