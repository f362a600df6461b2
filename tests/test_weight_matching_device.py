import jax
import numpy as np
import pytest

from lmc_jax import host_arrays, tree_utils
from lmc_jax.align.weight import matching_objective, weight_matching
from lmc_jax.align.weight_device import match_many
from lmc_jax.symmetry.spec import (
  apply_permutation,
  invert_permutation,
  mlp_permutation_spec,
  perm_sizes,
  random_permutation,
)
from tests.helpers import random_params


def _stack(trees):
  """Stacked on axis 0 by numpy in host memory: no program per leaf shape."""
  return tree_utils.stack(trees, host_arrays.stack)


def test_recovers_planted_permutations_for_many_pairs_at_once():
  spec = mlp_permutation_spec(3, layernorm=True)
  nets, planted, shuffled = [], [], []
  for k in range(3):
    _, a = random_params(jax.random.key(k), (8, 7, 6), d_in=5, layernorm="after_relu")
    p = random_permutation(jax.random.key(10 + k), perm_sizes(spec, a))
    nets.append(a)
    planted.append(p)
    shuffled.append(apply_permutation(spec, p, a))
  sizes = perm_sizes(spec, nets[0])
  perms, sweeps = match_many(spec, sizes, jax.random.split(jax.random.key(0), 3), _stack(nets),
                             _stack(shuffled))
  for k in range(3):
    inverse = invert_permutation(planted[k])
    for name in sizes:
      np.testing.assert_array_equal(np.asarray(perms[name])[k], inverse[name])
  assert np.all(np.asarray(sweeps) >= 1)


def test_agrees_with_the_host_matcher_on_random_nets():
  # One hidden layer: both solve the same assignment exactly, so the optimum must agree.
  spec = mlp_permutation_spec(1)
  pairs = [(random_params(jax.random.key(2 * k), (12,))[1],
            random_params(jax.random.key(2 * k + 1), (12,))[1]) for k in range(4)]
  sizes = perm_sizes(spec, pairs[0][0])
  perms, _ = match_many(spec, sizes, jax.random.split(jax.random.key(1), 4),
                        _stack([a for a, _ in pairs]), _stack([b for _, b in pairs]))
  for k, (a, b) in enumerate(pairs):
    host = weight_matching(jax.random.key(0), spec, a, b)
    dev = {n: np.asarray(v)[k] for n, v in perms.items()}
    assert matching_objective(spec, dev, a, b) == pytest.approx(host.objective[-1], rel=1e-5)
  # Three layers: coordinate descent may end in different local optima; both must beat
  # the identity, and on average land close to each other.
  spec3 = mlp_permutation_spec(3)
  a = random_params(jax.random.key(50), (10, 10, 10))[1]
  b = random_params(jax.random.key(51), (10, 10, 10))[1]
  sizes3 = perm_sizes(spec3, a)
  perms3, _ = match_many(spec3, sizes3, jax.random.key(3)[None], _stack([a]), _stack([b]))
  dev3 = {n: np.asarray(v)[0] for n, v in perms3.items()}
  ident = {n: np.arange(10) for n in sizes3}
  host3 = weight_matching(jax.random.key(3), spec3, a, b)
  assert matching_objective(spec3, dev3, a, b) > matching_objective(spec3, ident, a, b)
  assert matching_objective(spec3, dev3, a, b) == pytest.approx(host3.objective[-1], rel=0.05)


def _nan_at_3(v):
  """`v.at[3].set(nan)` by numpy: no scatter program per leaf shape."""
  v = np.array(v)
  v[3] = np.nan
  return jax.device_put(v)


def test_align_zoo_and_pairs_on_the_device_match_the_host():
  from lmc_jax.align.weight import align_pairs, align_zoo
  from lmc_jax.symmetry.spec import flatten
  spec = mlp_permutation_spec(1)
  # Four nets of the width the test above matches four of: the device matcher compiled once.
  nets = [random_params(jax.random.key(30 + k), (12,))[1] for k in range(4)]
  stack = _stack(nets)
  # A NaN model in `skip` must neither reach the solver nor be permuted.
  nan_stack = jax.tree_util.tree_map(_nan_at_3, stack)
  host = align_zoo(jax.random.key(0), spec, stack, reference=0, skip={3})
  dev = align_zoo(jax.random.key(0), spec, nan_stack, reference=0, skip={3}, matcher="device")
  assert dev.sweeps[0] == 0 and dev.sweeps[3] == 0 and dev.sweeps[1] >= 1
  for k in range(3):  # one hidden layer: one exact assignment, same answer
    for p in host.perms[k]:
      np.testing.assert_array_equal(dev.perms[k][p], host.perms[k][p])
  assert np.isnan(np.asarray(flatten(dev.params)["Dense_0/kernel"][3])).all()
  pairs = np.array([[0, 1], [1, 2], [0, 3], [2, 3]])  # four: the matcher above, compiled once
  h = align_pairs(jax.random.key(1), spec, stack, pairs)
  d = align_pairs(jax.random.key(1), spec, stack, pairs, matcher="device")
  for path, v in flatten(h).items():
    np.testing.assert_allclose(flatten(d)[path], v, rtol=1e-6)


def test_each_groups_solve_is_traced_once_not_once_per_step():
  """A sweep updates every group in a random order: the program holds each group's
  similarity products (and Hungarian solve) once, not once per group and step, which made
  the compile grow with the square of the number of groups."""
  from lmc_jax.align.weight_device import weight_matching_jax
  from lmc_jax.symmetry.spec import matched_axes
  from tests.helpers.jaxprs import matrix_products
  spec = mlp_permutation_spec(5)
  a, b = (random_params(jax.random.key(k), (6, 5, 4, 3, 2))[1] for k in (0, 1))
  sizes = perm_sizes(spec, a)
  per_group = sum(len(matched_axes(spec, p)) for p in sizes)
  products = matrix_products(lambda x, y: weight_matching_jax(jax.random.key(0), spec, sizes,
                                                              x, y), a, b)
  assert len(sizes) == 5 and len(products) == per_group
