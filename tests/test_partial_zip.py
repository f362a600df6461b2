"""Partial zipping (`merging.partial`, `--zip_layers`): the two-branch network of a tiny MLP
equals one built here unit by unit in numpy from the zip's groups, for every K; K = 0 is
the two parents, K = depth the full zip; the side-by-side scores equal loops over examples;
REPAIR of each branch reaches the statistics an oracle computes."""
import jax
import numpy as np
import pytest

from lmc_jax.errors import LmcError
from lmc_jax.merging.combine import merge, merge_models
from lmc_jax.merging.evaluate import predict_logits
from lmc_jax.merging.partial import branch_logits, branch_scores, check_zip_layers, zip_depth
from lmc_jax.merging.zip import zip_models
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.derive import derive_spec
from lmc_jax.tree_utils import take
from tests.helpers import random_params

X = np.asarray(random_draws.normal(jax.random.key(3), (128, 3)))
HIDDEN = (4, 5)


def _nets():
  model, pa = random_params(jax.random.key(0), HIDDEN, d_in=3, d_out=3)
  _, pb = random_params(jax.random.key(1), HIDDEN, d_in=3, d_out=3)
  a, b = ({"params": jax.tree_util.tree_map(np.asarray, p)} for p in (pa, pb))
  return model, a, b, derive_spec(model, a, X[:1])


def _layers(v):
  p = v["params"]
  return [(np.asarray(p[f"Dense_{i}"]["kernel"], np.float64),
           np.asarray(p[f"Dense_{i}"]["bias"], np.float64)) for i in range(len(HIDDEN) + 1)]


def _oracle(a, b, groups, k, m, x):
  """Branch m's logits with the first k layers zipped, unit by unit: a zipped unit averages
  its members' incoming weights; a unit reading a zipped layer takes from each zipped unit
  the sum of its weights from that unit's members of its own model."""
  models = [_layers(a), _layers(b)]
  depth = len(HIDDEN) + 1
  h = x
  for layer in range(depth):
    prev = groups[layer - 1] if 0 < layer <= k else None  # the layer it reads is zipped

    def incoming(src, unit):
      w, bias = models[src][layer]
      if prev is None:
        col = w[:, unit]
      else:
        n_in = w.shape[0]
        col = np.array([sum(w[j % n_in, unit] for j in g if j // n_in == src) for g in prev])
      return col, bias[unit]

    n_out = models[0][layer][0].shape[1]
    cols, biases = [], []
    if layer < k and layer < depth - 1:  # a zipped hidden layer: one unit per group
      for g in groups[layer]:
        got = [incoming(i // n_out, i % n_out) for i in g]
        cols.append(np.mean([c for c, _ in got], 0))
        biases.append(np.mean([bb for _, bb in got]))
    elif layer == depth - 1 and k == depth:  # the zipped head: the mean of both
      for unit in range(n_out):
        got = [incoming(src, unit) for src in (0, 1)]
        cols.append(np.mean([c for c, _ in got], 0))
        biases.append(np.mean([bb for _, bb in got]))
    else:
      for unit in range(n_out):
        c, bb = incoming(m, unit)
        cols.append(c)
        biases.append(bb)
    h = h @ np.stack(cols, 1) + np.array(biases)
    if layer < depth - 1:
      h = np.maximum(h, 0)
  return h


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_partial_zip_equals_a_network_built_unit_by_unit(k):
  model, a, b, spec = _nets()
  _, zips = zip_models(model, spec, a, b, X)
  groups = [zips[f"P_{i}"].groups for i in range(len(HIDDEN))]
  out = merge_models(model, spec, [a, b], method="zip", data=X, zip_layers=k)
  branches = out.variables if k < 3 else None
  for m in range(2):
    got = (predict_logits(model, take(branches, m), X) if k < 3
           else predict_logits(model, out.variables, X))
    np.testing.assert_allclose(got, _oracle(a, b, groups, k, m, X), atol=1e-4)
  if k == 0:  # the parents themselves
    np.testing.assert_allclose(branch_logits(model, branches, X),
                               np.concatenate([predict_logits(model, v, X) for v in (a, b)], 1),
                               atol=1e-5)
  if k == 3:  # the full zip
    full = merge(model, spec, [a, b], method="zip", data=X)
    np.testing.assert_allclose(predict_logits(model, out.variables, X),
                               predict_logits(model, full, X), atol=1e-6)


def test_zip_layers_beyond_the_depth_are_refused():
  _, _, _, spec = _nets()
  assert zip_depth(spec) == 3
  for bad in (-1, 4):
    with pytest.raises(LmcError, match="outside this network, which has 3 layers"):
      check_zip_layers(bad, spec)


def test_side_by_side_scores_against_loops():
  rng = np.random.default_rng(0)
  logits, y = rng.normal(size=(150, 8)), rng.integers(0, 4, 150)
  s = branch_scores(logits, y, [(0, 1), (2, 3)])
  assert s.acc == pytest.approx(np.mean([np.argmax(r) % 4 == t for r, t in zip(logits, y)]))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  assert s.loss == pytest.approx(np.mean([-np.log(p[t] + p[4 + t]) for p, t in zip(probs, y)]))
  for m, classes in enumerate(((0, 1), (2, 3))):
    hits = [max(classes, key=lambda c: logits[i, 4 * m + c]) == y[i]
            for i in range(150) if y[i] in classes]
    assert s.parts[m] == pytest.approx(np.mean(hits))


def test_repair_of_each_branch_reaches_the_oracle_statistics():
  model, a, b, spec = _nets()
  _, zips = zip_models(model, spec, a, b, X)
  out = merge_models(model, spec, [a, b], method="zip", data=X, zip_layers=1, repair=True)
  la, lb = _layers(a), _layers(b)
  pre_out = [X @ la[0][0] + la[0][1], X @ lb[0][0] + lb[0][1]]
  # zipped layer 0: a group's target is the mean of its members' pre-activation mean / std
  stats = [(p.mean(0), p.std(0)) for p in pre_out]
  for m in range(2):
    branch = take(out.variables, m)
    w0, b0 = (np.asarray(branch["params"]["Dense_0"][k], np.float64) for k in ("kernel", "bias"))
    got = X @ w0 + b0
    for g, members in enumerate(zips["P_0"].groups):
      want_mean = np.mean([stats[i // 4][0][i % 4] for i in members])
      want_std = np.mean([stats[i // 4][1][i % 4] for i in members])
      assert got[:, g].mean() == pytest.approx(want_mean, abs=1e-4)
      assert got[:, g].std() == pytest.approx(want_std, rel=1e-3, abs=1e-4)
    # layer 1 is branch m's own: its pre-activations get parent m's statistics
    parent = (la, lb)[m]
    h_parent = np.maximum(X @ parent[0][0] + parent[0][1], 0) @ parent[1][0] + parent[1][1]
    w1, b1 = (np.asarray(branch["params"]["Dense_1"][k], np.float64) for k in ("kernel", "bias"))
    got1 = np.maximum(got, 0) @ w1 + b1
    np.testing.assert_allclose(got1.mean(0), h_parent.mean(0), atol=1e-4)
    np.testing.assert_allclose(got1.std(0), h_parent.std(0), rtol=1e-3, atol=1e-4)
