"""Every alignment method, checked against planted permutations and plain computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.align.activation import correlation, hidden_features
from lmc_jax.align.diagnostics import agreement, cycle_consistency, fraction_moved
from lmc_jax.align.exact import candidates, exact_alignment
from lmc_jax.align.merge_many import merge_many
from lmc_jax.align.registry import MethodSettings, align_by, check_methods, method_names
from lmc_jax.align.sinkhorn import log_sinkhorn, sinkhorn_matching
from lmc_jax.align.weight import weight_matching
from lmc_jax.errors import LmcError
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.spec import (
  apply_permutation,
  apply_soft_permutation,
  invert_permutation,
  mlp_permutation_spec,
  random_permutation,
)
from tests.helpers import random_params

SMALL = MethodSettings()  # the default 50 steps of STE and Sinkhorn


def _teacher(bias_shift: float):
  """A net with two hidden layers of width 4 (24^2 = 576 joint permutations, so exact
  search runs) whose hidden units are all active and distinct on the data (biases shifted
  up: no dead ReLU leaves a tie), and inputs labelled by the net itself."""
  model, params = random_params(jax.random.key(11), (4, 4), d_in=2, d_out=2)
  params = dict(params)
  for layer in ("Dense_0", "Dense_1"):
    params[layer] = dict(params[layer], bias=params[layer]["bias"] + bias_shift)
  # Confident logits: the net's loss on its own labels is near 0, so no other line can have
  # a lower loss than the planted copy's flat one, and the learned methods (STE, Sinkhorn)
  # must stay at it too.
  params["Dense_2"] = jax.tree_util.tree_map(lambda v: 20.0 * v, params["Dense_2"])
  params = jax.tree_util.tree_map(np.asarray, params)
  x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
  y = np.asarray(jnp.argmax(model.apply({"params": params}, x), -1)).astype(np.int32)
  return model, params, (x[:200], y[:200], x[200:], y[200:])


@pytest.fixture(scope="module")
def teacher():
  return _teacher(1.0)


def _stack(*trees):
  return jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(v) for v in a]), *trees)


# The orthogonal methods refuse this ReLU net (tests/test_orthogonal_matching.py).
@pytest.mark.parametrize("name", [m for m in method_names()
                                  if m != "exact" and not m.startswith("orthogonal")])
def test_every_method_recovers_a_planted_permutation(teacher, name):
  model, a, (x_fit, y_fit, x_eval, y_eval) = teacher
  spec = mlp_permutation_spec(2)
  planted = {"P_0": np.array([2, 0, 3, 1]), "P_1": np.array([1, 3, 0, 2])}
  b = apply_permutation(spec, planted, a)
  res = align_by(name, model, spec, _stack(a, b), 0, (), x_fit, y_fit, x_eval, y_eval, SMALL)
  for p in planted:  # the permutation that undoes the planted one
    np.testing.assert_array_equal(res.perms[1][p], invert_permutation(planted)[p])
    np.testing.assert_array_equal(res.perms[0][p], np.arange(4))
  for u, v in zip(jax.tree_util.tree_leaves(res.params), jax.tree_util.tree_leaves(_stack(a, a))):
    np.testing.assert_allclose(u, v, atol=1e-6)


def test_exact_search_finds_an_optimum_the_planted_permutation_shares():
  """Epsilon is floored at 0 (the endpoints are on the line), so a planted copy's flat line
  can tie with others that have no bump: exact search must return an epsilon-0 permutation,
  and undoing the planted one must be among its optima. With biases shifted by 1 the units
  are alive but nonlinear, and nearly every other permutation has a bump."""
  model, a, (_, _, x_eval, y_eval) = _teacher(1.0)
  spec = mlp_permutation_spec(2)
  planted = {"P_0": np.array([2, 0, 3, 1]), "P_1": np.array([1, 3, 0, 2])}
  b = apply_permutation(spec, planted, a)
  res = exact_alignment(model, spec, a, b, x_eval, y_eval)
  assert res.epsilon == pytest.approx(0.0, abs=1e-6)
  cands = candidates({"P_0": 4, "P_1": 4})
  undo = invert_permutation(planted)
  index = np.flatnonzero((cands["P_0"] == undo["P_0"]).all(1)
                         & (cands["P_1"] == undo["P_1"]).all(1))
  assert res.all_epsilon[index[0]] == pytest.approx(0.0, abs=1e-6)
  assert np.sum(res.all_epsilon <= 1e-6) <= 2  # at most a tie, not a flat landscape


def test_unknown_method_is_refused_by_name():
  with pytest.raises(LmcError, match="Unknown alignment method.*nearest"):
    check_methods(["weight", "nearest"])


def test_correlation_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 4))
  expected = np.corrcoef(a.T, b.T)[:3, 3:]
  np.testing.assert_allclose(correlation(a, b), expected, atol=1e-12)


def test_hidden_features_are_the_hidden_layer_outputs():
  model, params = random_params(jax.random.key(0), (5, 3), d_in=2, d_out=2, layernorm="after_relu")
  x = jax.device_put(np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32))
  h0, h1 = hidden_features(model, mlp_permutation_spec(2, True), params, x)
  # Plain forward pass in numpy: Dense -> ReLU -> LayerNorm, twice.
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
  def ln(h, p):
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]
  plain0 = ln(np.maximum(np.asarray(x, np.float64) @ p["Dense_0"]["kernel"]
                         + p["Dense_0"]["bias"], 0), p["LayerNorm_0"])
  plain1 = ln(np.maximum(plain0 @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0),
              p["LayerNorm_1"])
  np.testing.assert_allclose(h0, plain0, atol=1e-5)
  np.testing.assert_allclose(h1, plain1, atol=1e-5)


def test_soft_permutation_by_a_permutation_matrix_is_the_permutation():
  spec = mlp_permutation_spec(2, layernorm=True)
  model, params = random_params(jax.random.key(1), (4, 3), d_in=2, d_out=2, layernorm="after_relu")
  perm = random_permutation(jax.random.key(2), {"P_0": 4, "P_1": 3})
  # Row i has its 1 at perm[i].
  mats = {p: np.eye(len(v), dtype=np.float32)[np.asarray(v)] for p, v in perm.items()}
  soft = apply_soft_permutation(spec, mats, params)
  hard = apply_permutation(spec, perm, params)
  for x, y in zip(jax.tree_util.tree_leaves(soft), jax.tree_util.tree_leaves(hard)):
    np.testing.assert_allclose(x, y, atol=1e-6)


def test_sinkhorn_gives_doubly_stochastic_matrices_and_valid_permutations():
  logits = random_draws.normal(jax.random.key(0), (6, 6)) * 3
  p = np.asarray(log_sinkhorn(logits, 200))
  np.testing.assert_allclose(p.sum(0), 1, atol=1e-5)
  np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)
  assert (p >= 0).all()
  spec = mlp_permutation_spec(2)
  model, a = random_params(jax.random.key(3), (5, 4), d_in=2, d_out=2)
  bs = [random_params(jax.random.key(k), (5, 4), d_in=2, d_out=2)[1] for k in (4, 5)]
  starts = [weight_matching(jax.random.key(0), spec, a, b).perm for b in bs]
  x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  res = sinkhorn_matching(jax.random.key(0), model, spec, a, _stack(*bs), starts, x, y, steps=10)
  assert len(res.perms) == 2
  for perm in res.perms:
    for name, size in (("P_0", 5), ("P_1", 4)):
      np.testing.assert_array_equal(np.sort(perm[name]), np.arange(size))
  np.testing.assert_allclose(res.soft["P_0"].sum(-2), 1, atol=1e-4)
  assert res.losses.shape == (10, 2) and np.isfinite(res.losses).all()


def test_merge_many_puts_permuted_copies_in_one_frame():
  spec = mlp_permutation_spec(2)
  _, a = random_params(jax.random.key(7), (6, 5), d_in=3, d_out=2)
  perms = [random_permutation(jax.random.key(k), {"P_0": 6, "P_1": 5}) for k in range(4)]
  copies = _stack(*[apply_permutation(spec, p, a) for p in perms])
  res = merge_many(jax.random.key(0), spec, copies, reference=1)
  aligned = [apply_permutation(spec, p, jax.tree_util.tree_map(lambda v: v[k], copies))
             for k, p in enumerate(res.perms)]
  reference = jax.tree_util.tree_map(lambda v: v[1], copies)
  for tree in aligned:  # every copy lands on the reference's own frame
    for x, y in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(reference)):
      np.testing.assert_allclose(x, y)
  assert fraction_moved(res.perms[1]) == 0.0
  assert res.changed[-1] == []  # it stopped because a round changed nothing


def test_diagnostics_by_hand():
  assert fraction_moved({"P_0": np.array([0, 2, 1, 3])}) == 0.5
  assert (agreement({"P_0": np.array([0, 1, 2])}, {"P_0": np.array([0, 2, 1])})
          == pytest.approx(1 / 3))
  # Copies of one net under known permutations: matching is exact, so it is transitive.
  spec = mlp_permutation_spec(1)
  _, a = random_params(jax.random.key(8), (7,), d_in=3, d_out=2)
  nets = [apply_permutation(spec, random_permutation(jax.random.key(k), {"P_0": 7}), a)
          for k in range(3)]
  match = lambda i, j: weight_matching(jax.random.key(0), spec, nets[i], nets[j]).perm
  assert cycle_consistency(match, [(0, 1, 2)]) == [1.0]
  # A deliberately wrong second hop breaks it.
  wrong = lambda i, j: ({"P_0": np.roll(match(i, j)["P_0"], 1)} if (i, j) == (1, 2)
                        else match(i, j))
  assert cycle_consistency(wrong, [(0, 1, 2)]) == [0.0]
