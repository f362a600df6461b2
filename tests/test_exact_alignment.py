import itertools

import jax
import numpy as np
import pytest

from lmc_jax.align.exact import exact_alignment
from lmc_jax.align.weight import weight_matching
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import pair_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.symmetry.spec import apply_permutation, mlp_permutation_spec
from tests.helpers import random_params


def _data():
  rng = np.random.default_rng(0)
  return rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 2, 40).astype(np.int32)


def _eps_plain(model, a, b, x, y):
  both = jax.tree_util.tree_map(lambda u, v: np.stack([np.asarray(u), np.asarray(v)]), a, b)
  c = pair_sweep(model, both, [[0, 1]], x, y)
  return float(epsilon(c.loss, c.alphas)[0])


def test_exact_search_agrees_with_a_plain_loop_over_permutations():
  spec = mlp_permutation_spec(1)
  model, a = random_params(jax.random.key(0), (4,), d_in=3, d_out=2)
  _, b = random_params(jax.random.key(1), (4,), d_in=3, d_out=2)
  x, y = _data()
  res = exact_alignment(model, spec, a, b, x, y)
  plain = [_eps_plain(model, a, apply_permutation(spec, {"P_0": np.array(p)}, b), x, y)
           for p in itertools.permutations(range(4))]
  np.testing.assert_allclose(res.all_epsilon, plain, rtol=1e-5, atol=1e-6)
  assert res.epsilon == pytest.approx(min(plain), abs=1e-6)
  # Weight matching can only be as good as the optimum, never better.
  wm = weight_matching(jax.random.key(0), spec, a, b)
  assert _eps_plain(model, a, apply_permutation(spec, wm.perm, b), x, y) >= res.epsilon - 1e-6


def test_exact_search_over_two_layers_agrees_with_nested_plain_loops():
  spec = mlp_permutation_spec(2)
  model, a = random_params(jax.random.key(2), (3, 3), d_in=3, d_out=2)
  _, b = random_params(jax.random.key(3), (3, 3), d_in=3, d_out=2)
  x, y = _data()
  res = exact_alignment(model, spec, a, b, x, y)
  plain = {}
  for p0 in itertools.permutations(range(3)):
    for p1 in itertools.permutations(range(3)):
      perm = {"P_0": np.array(p0), "P_1": np.array(p1)}
      plain[(p0, p1)] = _eps_plain(model, a, apply_permutation(spec, perm, b), x, y)
  assert len(res.all_epsilon) == 36
  np.testing.assert_allclose(sorted(res.all_epsilon), sorted(plain.values()), rtol=1e-5, atol=1e-6)
  best = (tuple(res.perm["P_0"]), tuple(res.perm["P_1"]))
  assert plain[best] == pytest.approx(min(plain.values()), abs=1e-6)


def test_exact_search_refuses_what_it_cannot_do():
  x, y = _data()
  model, a = random_params(jax.random.key(0), (9,), d_in=3, d_out=2)
  with pytest.raises(LmcError, match="up to 40,320"):
    exact_alignment(model, mlp_permutation_spec(1), a, a, x, y)
  model2, a2 = random_params(jax.random.key(0), (5, 5, 5), d_in=3, d_out=2)
  with pytest.raises(LmcError, match="5, 5, 5 means 1,728,000"):
    exact_alignment(model2, mlp_permutation_spec(3), a2, a2, x, y)
  model3, a3 = random_params(jax.random.key(0), (200,), d_in=3, d_out=2)  # 200! overflows a float
  with pytest.raises(LmcError, match="means about 10\\^374 permutations"):
    exact_alignment(model3, mlp_permutation_spec(1), a3, a3, x, y)


def test_exact_search_refuses_more_work_than_its_limit():
  x, y = _data()
  model, a = random_params(jax.random.key(0), (8,), d_in=3, d_out=2)
  # 40,320 permutations x 11 alphas x 40 samples x 2 * (3*8 + 8*2) FLOP = 1.4 GFLOP
  with pytest.raises(LmcError, match="needs 0.00142 TFLOP, over the 0.001 TFLOP limit"):
    exact_alignment(model, mlp_permutation_spec(1), a, a, x, y, max_tflop=1e-3)
