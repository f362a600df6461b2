"""Merging (`lmc_jax.merging`): a model merged with a permuted copy of itself is the model,
for every method; N permuted copies merge exactly; ZipIt!'s zip equals one written out here
in numpy loops; the evaluations equal loops over examples."""
import jax
import numpy as np
import pytest

from lmc_jax.align.registry import MethodSettings
from lmc_jax.merging.combine import merge, merge_method_names, merge_models
from lmc_jax.merging.evaluate import ensemble_logits, part_accuracy, predict_logits, scores
from lmc_jax.merging.zip import zip_correlation
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.derive import derive_spec
from lmc_jax.symmetry.spec import apply_permutation, perm_sizes, random_permutation
from tests.helpers import random_params

X = np.asarray(random_draws.normal(jax.random.key(7), (96, 3)))
SETTINGS = MethodSettings(ste_steps=5, sinkhorn_steps=5)


def _net(hidden=(6,), seed=0):
  model, params = random_params(jax.random.key(seed), hidden, d_in=3, d_out=3)
  variables = {"params": jax.tree_util.tree_map(np.asarray, params)}
  return model, variables, derive_spec(model, variables, X[:1])


def _permuted(spec, variables, seed):
  perm = random_permutation(jax.random.key(seed), perm_sizes(spec, variables))
  return apply_permutation(spec, perm, variables)


def _close(a, b, tol=1e-5):
  leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda u, v: np.max(np.abs(np.asarray(u) - np.asarray(v))), a, b))
  assert max(leaves) < tol, leaves


# The orthogonal methods refuse a ReLU net (no group rotates); tests/test_orthogonal_matching.py
# merges a rotated transformer.
@pytest.mark.parametrize("method", [m for m in merge_method_names()
                                    if m != "naive" and not m.startswith("orthogonal")])
def test_a_model_merged_with_a_permuted_copy_is_the_model(method):
  model, a, spec = _net()
  b = _permuted(spec, a, 1)
  y = np.argmax(predict_logits(model, a, X), 1)
  merged = merge(model, spec, [a, b], method=method, data=(X, y), settings=SETTINGS)
  if method in ("ste", "sinkhorn"):  # fitted by gradient steps: the function, not the weights
    np.testing.assert_allclose(predict_logits(model, merged, X), predict_logits(model, a, X),
                               atol=1e-3)
  else:
    _close(merged, a)


@pytest.mark.parametrize("method", ["weight", "mergemany"])
def test_n_permuted_copies_merge_exactly(method):
  model, a, spec = _net(seed=3)
  copies = [a] + [_permuted(spec, a, s) for s in (5, 6, 7)]
  _close(merge(model, spec, copies, method=method), a)
  out = merge_models(model, spec, copies, method=method, repair=True, data=X)
  np.testing.assert_allclose(predict_logits(model, out.variables, X),
                             predict_logits(model, a, X), atol=1e-4)


def test_naive_is_the_weighted_mean_and_models_must_match():
  model, a, spec = _net()
  _, b, _ = _net(seed=1)
  got = merge(model, spec, [a, b], method="naive", alpha=0.25)
  want = jax.tree_util.tree_map(lambda u, v: 0.75 * u + 0.25 * v, a, b)
  _close(got, want)
  _, c, _ = _net(hidden=(7,))
  with pytest.raises(Exception, match="differ in their variables"):
    merge(model, spec, [a, c], method="naive")
  with pytest.raises(Exception, match="Unknown merging method"):
    merge(model, spec, [a, b], method="blend")


def _zip_by_hand(wa, ba, va, ca, wb, bb, vb, cb, x, alpha, beta):
  """A one-hidden-layer net (x @ w + b, relu, @ v + c) zipped in numpy loops."""
  n = wa.shape[1]
  feats = np.concatenate([np.maximum(x @ wa + ba, 0), np.maximum(x @ wb + bb, 0)], 1)
  corr = np.corrcoef(feats.T)
  groups = {i: {i} for i in range(2 * n)}  # keyed by the group's smallest member
  sim = {(i, j): corr[i, j] for i in range(2 * n) for j in range(2 * n) if i != j}
  budget = {0: int(n // 2 * beta + 1e-4), 1: int(n // 2 * beta + 1e-4)}
  origin = {i: i // n for i in range(2 * n)}
  while len(groups) > n:
    keys = sorted(groups)
    best, bi, bj = -np.inf, None, None
    for i in keys:
      for j in keys:
        if i != j and sim[(i, j)] > best:
          best, bi, bj = sim[(i, j)], i, j
    i, j = min(bi, bj), max(bi, bj)
    groups[i] |= groups.pop(j)
    for k in groups:
      if k != i:
        s = min(sim[(i, k)], sim[(j, k)])
        s = s * alpha if alpha > 0 else -np.inf
        sim[(i, k)] = sim[(k, i)] = s
    if origin[i] == origin[j]:
      budget[origin[i]] -= 1
      if budget[origin[i]] <= 0:
        for k in groups:
          for m2 in groups:
            if k != m2 and origin[k] == origin[m2] == origin[i]:
              sim[(k, m2)] = -np.inf
  w, b = np.zeros_like(wa), np.zeros_like(ba)
  v = np.zeros_like(va)
  for g, key in enumerate(sorted(groups)):
    members = sorted(groups[key])
    for m in members:
      src_w, src_b, src_v = (wa, ba, va) if m < n else (wb, bb, vb)
      w[:, g] += src_w[:, m % n] / len(members)
      b[g] += src_b[m % n] / len(members)
      v[g] += src_v[m % n] / 2
  return w, b, v, (ca + cb) / 2


@pytest.mark.parametrize("alpha,beta", [(0.3, 0.125), (0.5, 1.0), (0.0, 0.5)])
def test_zip_equals_a_zip_written_out_by_hand(alpha, beta):
  model, a, spec = _net(hidden=(6,))
  _, b, _ = _net(hidden=(6,), seed=1)
  got = merge(model, spec, [a, b], method="zip", data=X, zip_alpha=alpha, zip_beta=beta)
  pa, pb = a["params"], b["params"]
  want = _zip_by_hand(pa["Dense_0"]["kernel"], pa["Dense_0"]["bias"], pa["Dense_1"]["kernel"],
                      pa["Dense_1"]["bias"], pb["Dense_0"]["kernel"], pb["Dense_0"]["bias"],
                      pb["Dense_1"]["kernel"], pb["Dense_1"]["bias"], X, alpha, beta)
  g = got["params"]
  for mine, theirs in zip((g["Dense_0"]["kernel"], g["Dense_0"]["bias"], g["Dense_1"]["kernel"],
                           g["Dense_1"]["bias"]), want):
    np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_zip_correlation_merges_one_of_each_for_copies():
  corr = np.corrcoef(np.random.default_rng(0).normal(size=(50, 4)).T)
  z = zip_correlation(np.block([[corr, corr], [corr, corr]]))
  assert sorted(map(sorted, z.groups)) == [[0, 4], [1, 5], [2, 6], [3, 7]]
  np.testing.assert_allclose(z.merge.sum(1), 1)


def test_part_accuracy_and_ensemble_against_loops():
  rng = np.random.default_rng(0)
  logits, y = rng.normal(size=(200, 6)), rng.integers(0, 6, 200)
  for classes in ((0, 1, 2), (3, 5), (4,)):
    hits = [max(classes, key=lambda c: logits[k, c]) == y[k] for k in range(200) if y[k] in classes]
    assert part_accuracy(logits, y, classes) == pytest.approx(np.mean(hits))
  s = scores(logits, y, [(0, 1, 2), (3, 4, 5)])
  assert s.acc == pytest.approx(np.mean([np.argmax(logits[k]) == y[k] for k in range(200)]))
  lse = np.log(np.exp(logits).sum(1))
  assert s.loss == pytest.approx(np.mean(lse - logits[np.arange(200), y]), rel=1e-5)
  other = rng.normal(size=(200, 6))
  np.testing.assert_allclose(ensemble_logits([logits, other]), (logits + other) / 2, rtol=1e-6)
