import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import MIN_FAN_IN_TO_INTERPOLATE_OUTPUT, all_pairs, pair_sweep
from lmc_jax.symmetry.spec import flatten
from tests.helpers import random_params


def _numpy_metrics(params, x, y):
  """Loss and accuracy by a plain numpy forward pass (1 hidden layer, softmax)."""
  f = {k: np.asarray(v, np.float64) for k, v in flatten(params).items()}
  h = np.maximum(x @ f["Dense_0/kernel"] + f["Dense_0/bias"], 0)
  z = h @ f["Dense_1/kernel"] + f["Dense_1/bias"]
  logp = (z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
          - z.max(1, keepdims=True))
  return -logp[np.arange(len(y)), y].mean(), (z.argmax(1) == y).mean()


def test_all_pairs_are_unordered_and_skip_excluded():
  np.testing.assert_array_equal(all_pairs(4), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
  np.testing.assert_array_equal(all_pairs(4, exclude={1}), [[0, 2], [0, 3], [2, 3]])
  assert all_pairs(1).shape == (0, 2)


@pytest.mark.parametrize("batch_size, chunk", [(1024, None), (7, 2), (50, 5)])
def test_sweep_equals_a_plain_loop(batch_size, chunk):
  n_models, n = 4, 50  # 50 samples with batch 7: a partial last batch must not be over-weighted
  members = [random_params(jax.random.key(k), (6,), d_in=3, d_out=3) for k in range(n_models)]
  model = members[0][0]
  stack = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[m[1] for m in members])
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  y = rng.integers(0, 3, n).astype(np.int32)
  pairs = all_pairs(n_models)
  curves = pair_sweep(model, stack, pairs, x, y, batch_size=batch_size, chunk=chunk)
  assert curves.loss.shape == (6, 11) and curves.acc.shape == (6, 11)
  for p, (i, j) in enumerate(pairs):
    for a_idx, alpha in enumerate(curves.alphas):
      theta = jax.tree_util.tree_map(lambda u, v: (1 - alpha) * np.asarray(u, np.float64)
                                     + alpha * np.asarray(v, np.float64),
                                     members[i][1], members[j][1])
      loss, acc = _numpy_metrics(theta, x.astype(np.float64), y)
      assert curves.loss[p, a_idx] == pytest.approx(loss, rel=1e-4, abs=1e-5)
      assert curves.acc[p, a_idx] == pytest.approx(acc, abs=1e-6)


def test_sweep_needs_a_pair():
  model, params = random_params(jax.random.key(0), (3,))
  stack = jax.tree_util.tree_map(lambda v: v[None], params)
  with pytest.raises(LmcError, match="at least 2"):
    pair_sweep(model, stack, all_pairs(1), np.zeros((4, 3), np.float32), np.zeros(4, np.int32))


def test_pairwise_aligned_sweep_runs_from_i_to_the_aligned_copy():
  from lmc_jax.lmc.interpolation import pairwise_aligned_sweep
  members = [random_params(jax.random.key(k), (5,), d_in=3, d_out=3) for k in range(3)]
  model = members[0][0]
  stack = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[m[1] for m in members])
  # Stand-in "aligned" copies: any params will do; the curve must end at them.
  other = [random_params(jax.random.key(10 + k), (5,), d_in=3, d_out=3)[1] for k in range(2)]
  aligned = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *other)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 3)).astype(np.float32)
  y = rng.integers(0, 3, 30).astype(np.int32)
  pairs = np.array([[0, 1], [2, 0]])
  curves = pairwise_aligned_sweep(model, stack, aligned, pairs, x, y)
  np.testing.assert_array_equal(curves.pairs, pairs)
  for p, (i, _) in enumerate(pairs):
    assert curves.loss[p, 0] == pytest.approx(
        _numpy_metrics(members[i][1], x.astype(np.float64), y)[0], rel=1e-4)
    assert curves.loss[p, -1] == pytest.approx(
        _numpy_metrics(other[p], x.astype(np.float64), y)[0], rel=1e-4)


@pytest.mark.parametrize("layernorm", ["none", "after_relu", "before_relu"])
def test_sweep_of_deep_nets_equals_evaluating_each_mixed_net(layernorm):
  """The sweep interpolates the first layer's output instead of its weights; each point
  must still be the loss of the network with interpolated weights, evaluated by Flax."""
  d_in = MIN_FAN_IN_TO_INTERPOLATE_OUTPUT  # wide enough to take the interpolated-output path
  members = [random_params(jax.random.key(k), (5, 4), d_in=d_in, d_out=3, layernorm=layernorm)
             for k in range(3)]
  model = members[0][0]
  stack = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[m[1] for m in members])
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, d_in)).astype(np.float32)
  y = rng.integers(0, 3, 30).astype(np.int32)
  curves = pair_sweep(model, stack, all_pairs(3), x, y, batch_size=8)

  @jax.jit  # one program for every pair and alpha, not one per op
  def mixed_logits(alpha, i, j):
    mixed = jax.tree_util.tree_map(lambda u: (1 - alpha) * u[i] + alpha * u[j], stack)
    return model.apply({"params": mixed}, x)
  for p, (i, j) in enumerate(all_pairs(3)):
    for a_idx, alpha in enumerate(curves.alphas):
      logits = np.asarray(mixed_logits(alpha, i, j), np.float64)
      logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
      assert curves.loss[p, a_idx] == pytest.approx(-logp[np.arange(30), y].mean(), rel=1e-5,
                                                    abs=1e-6)
      assert curves.acc[p, a_idx] == pytest.approx((logits.argmax(1) == y).mean())
