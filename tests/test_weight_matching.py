import itertools

import jax
import numpy as np
import pytest

from lmc_jax import host_arrays, tree_utils
from lmc_jax.align.weight import align_zoo, matching_objective, weight_matching
from lmc_jax.symmetry.spec import (
  apply_permutation,
  flatten,
  invert_permutation,
  mlp_permutation_spec,
  perm_sizes,
  random_permutation,
)
from tests.helpers import random_params


def _stack(trees):
  """Stacked on axis 0 by numpy in host memory: no program per leaf shape."""
  return tree_utils.stack(trees, host_arrays.stack)


@pytest.mark.parametrize("hidden, layernorm", [((16,), "none"), ((12, 10, 8), "none"),
                                               ((12, 10, 8), "after_relu")])
def test_recovers_a_planted_permutation(hidden, layernorm):
  _, a = random_params(jax.random.key(0), hidden, d_in=5, d_out=3, layernorm=layernorm)
  spec = mlp_permutation_spec(len(hidden), layernorm != "none")
  planted = random_permutation(jax.random.key(1), perm_sizes(spec, a))
  b = apply_permutation(spec, planted, a)
  res = weight_matching(jax.random.key(2), spec, a, b)
  inverse = invert_permutation(planted)
  for p in planted:
    np.testing.assert_array_equal(res.perm[p], inverse[p])
  aligned = apply_permutation(spec, res.perm, b)
  for k, v in flatten(a).items():
    np.testing.assert_array_equal(flatten(aligned)[k], v)


@pytest.mark.parametrize("width", [2, 4, 6])
def test_one_hidden_layer_objective_equals_brute_force(width):
  spec = mlp_permutation_spec(1)
  for seed in range(3):
    _, a = random_params(jax.random.key(10 + seed), (width,), d_in=3, d_out=2)
    _, b = random_params(jax.random.key(20 + seed), (width,), d_in=3, d_out=2)
    best = max(matching_objective(spec, {"P_0": np.array(p)}, a, b)
               for p in itertools.permutations(range(width)))
    res = weight_matching(jax.random.key(0), spec, a, b)
    assert res.objective[-1] == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert matching_objective(spec, res.perm, a, b) == pytest.approx(best, rel=1e-9)


def test_objective_never_decreases_and_beats_identity():
  spec = mlp_permutation_spec(3, layernorm=True)
  _, a = random_params(jax.random.key(3), (10, 10, 10), layernorm="after_relu")
  _, b = random_params(jax.random.key(4), (10, 10, 10), layernorm="after_relu")
  res = weight_matching(jax.random.key(5), spec, a, b, max_iter=50)
  assert np.all(np.diff(res.objective) >= -1e-9)
  ident = {p: np.arange(10) for p in res.perm}
  assert res.objective[-1] > matching_objective(spec, ident, a, b)
  # Each permutation is a permutation.
  for p in res.perm.values():
    assert sorted(p.tolist()) == list(range(10))


def test_max_iter_bounds_the_sweeps():
  spec = mlp_permutation_spec(3)
  _, a = random_params(jax.random.key(6), (8, 8, 8))
  _, b = random_params(jax.random.key(7), (8, 8, 8))
  assert weight_matching(jax.random.key(0), spec, a, b, max_iter=1).sweeps == 1


def test_align_zoo_undoes_planted_permutations_of_the_reference():
  spec = mlp_permutation_spec(2, layernorm=True)
  _, ref = random_params(jax.random.key(8), (7, 6), layernorm="before_relu")
  sizes = perm_sizes(spec, ref)
  members = [ref] + [apply_permutation(spec, random_permutation(jax.random.key(k), sizes), ref)
                     for k in range(1, 4)]
  stack = _stack(members)
  out = align_zoo(jax.random.key(0), spec, stack, reference=0)
  assert out.reference == 0 and out.objective[0] == []
  for path, v in flatten(out.params).items():
    for k in range(4):
      np.testing.assert_allclose(np.asarray(v)[k], flatten(ref)[path], rtol=0, atol=0)


def test_align_pairs_equals_matching_each_pair_directly():
  from lmc_jax.align.weight import align_pairs
  spec = mlp_permutation_spec(2)
  nets = [random_params(jax.random.key(20 + k), (6, 5))[1] for k in range(3)]
  stack = _stack(nets)
  pairs = np.array([[0, 1], [0, 2], [1, 2]])
  key = jax.random.key(9)
  out = align_pairs(key, spec, stack, pairs)
  for p, (i, j) in enumerate(pairs):
    res = weight_matching(jax.random.fold_in(key, p), spec, nets[i], nets[j])
    want = flatten(apply_permutation(spec, res.perm, nets[j]))
    for path, v in flatten(out).items():
      np.testing.assert_array_equal(v[p], want[path])
