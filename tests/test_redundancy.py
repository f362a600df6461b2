import jax
import numpy as np
import pytest

from lmc_jax.analysis.unit_merging import (
  cosine_similarity,
  merge_similar_neurons,
  reduce_zoo,
  zero_pad,
)
from lmc_jax.errors import LmcError
from lmc_jax.nn.models import make_mlp
from tests.helpers import random_params


def _with_copies(key, base_width=5, copies=((0, 2.5), (3, 0.3), (0, 1.0))):
  """A net whose extra units are exact positive multiples of units 0 and 3."""
  _, p = random_params(key, (base_width,), d_in=8, d_out=3)  # 9-d units: no chance near-copies
  k, b = np.asarray(p["Dense_0"]["kernel"]), np.asarray(p["Dense_0"]["bias"])
  v = np.asarray(p["Dense_1"]["kernel"])
  rng = np.random.default_rng(0)
  for src, lam in copies:
    k = np.concatenate([k, lam * k[:, src:src + 1]], 1)
    b = np.concatenate([b, [lam * b[src]]])
    v = np.concatenate([v, rng.normal(size=(1, v.shape[1]))], 0)
  return {"Dense_0": {"kernel": k.astype(np.float32), "bias": b.astype(np.float32)},
          "Dense_1": {"kernel": v.astype(np.float32), "bias": np.asarray(p["Dense_1"]["bias"])}}


def _out(params, x):
  width = params["Dense_0"]["kernel"].shape[1]
  model = make_mlp((width,), params["Dense_1"]["kernel"].shape[1])
  return np.asarray(model.apply({"params": params}, x))


def test_merging_proportional_units_keeps_the_function():
  params = _with_copies(jax.random.key(0))
  res = merge_similar_neurons(params, 0.99)
  assert res.params["Dense_0"]["kernel"].shape == (8, 5)
  assert res.groups[0] == [0, 5, 7] and res.groups[3] == [3, 6]
  x = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
  np.testing.assert_allclose(_out(res.params, x), _out(params, x), rtol=1e-5, atol=1e-5)


def test_merge_uses_lambda_not_its_inverse():
  # The study's code used 1 / lam; with lam = 2.5 that changes the output, ours must not.
  params = _with_copies(jax.random.key(2), copies=((1, 2.5),))
  res = merge_similar_neurons(params)
  x = np.random.default_rng(3).normal(size=(16, 8)).astype(np.float32)
  wrong = {layer: {p: np.array(v) for p, v in d.items()} for layer, d in res.params.items()}
  wrong["Dense_1"]["kernel"][1] = (params["Dense_1"]["kernel"][1]
                                   + params["Dense_1"]["kernel"][5] / 2.5)
  assert not np.allclose(_out(wrong, x), _out(params, x), atol=1e-3)
  np.testing.assert_allclose(_out(res.params, x), _out(params, x), rtol=1e-5, atol=1e-5)


def test_cosine_matrix_against_a_plain_loop_and_dead_units():
  params = _with_copies(jax.random.key(4))
  params["Dense_0"]["kernel"][:, 2] = 0
  params["Dense_0"]["bias"][2] = 0
  cos = cosine_similarity(params)
  n = np.concatenate([params["Dense_0"]["kernel"].T, params["Dense_0"]["bias"][:, None]],
                     1).astype(np.float64)
  for i in range(len(n)):
    for j in range(len(n)):
      if i == 2 or j == 2:
        assert cos[i, j] == 0
      else:
        assert cos[i, j] == pytest.approx(n[i] @ n[j] / np.linalg.norm(n[i]) / np.linalg.norm(n[j]))
  res = merge_similar_neurons(params)
  assert all(2 not in g for g in res.groups)  # the dead unit is dropped
  x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
  np.testing.assert_allclose(_out(res.params, x), _out(params, x), rtol=1e-5, atol=1e-5)


def test_zero_padding_and_reduced_zoo_keep_functions():
  nets = [_with_copies(jax.random.key(k)) for k in range(3)]
  stack = {layer: {p: np.stack([n[layer][p] for n in nets]) for p in nets[0][layer]}
           for layer in nets[0]}
  reduced, widths = reduce_zoo(stack)
  assert widths.tolist() == [5, 5, 5] and reduced["Dense_0"]["kernel"].shape == (3, 8, 5)
  x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
  padded = zero_pad(nets[0], 12)
  np.testing.assert_allclose(_out(padded, x), _out(nets[0], x), rtol=1e-6, atol=1e-6)
  first = {layer: {p: v[0] for p, v in d.items()} for layer, d in reduced.items()}
  np.testing.assert_allclose(_out(first, x), _out(nets[0], x), rtol=1e-5, atol=1e-5)
  with pytest.raises(LmcError, match="pad"):
    zero_pad(nets[0], 3)


def test_deep_nets_are_refused():
  _, p = random_params(jax.random.key(0), (4, 4))
  with pytest.raises(LmcError, match="one hidden layer"):
    merge_similar_neurons(p)
