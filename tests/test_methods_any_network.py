"""Activation matching, the learned methods, MergeMany and REPAIR on a network written here,
not by lmc_jax: a conv net with a residual stream, LayerNorm, tanh and GELU. Oracles: planted
permutations, numpy correlations of whole arrays, and Flax's own captured intermediates."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import LmcError, derive_spec
from lmc_jax.align import activation
from lmc_jax.align.registry import MethodSettings, align_by
from lmc_jax.lmc.interpolation import pair_sweep
from lmc_jax.lmc.repair import repair_network, repaired_pair_sweep
from lmc_jax.nn import random_draws
from lmc_jax.nn.forward import apply_eval
from lmc_jax.symmetry.spec import apply_permutation, perm_sizes, random_permutation, spec_key
from lmc_jax.symmetry.units import feature_sites, repair_sites
from lmc_jax.tree_utils import flatten, stack, take


class TanhResNet(nn.Module):
  """Conv stem (bias) -> tanh; a residual block whose convs have no bias and a LayerNorm
  each; a hidden Dense with GELU; a confident readout."""
  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], 6, 6, 2)
    h = jnp.tanh(nn.Conv(5, (3, 3), name="stem")(x))
    y = jnp.tanh(nn.LayerNorm(name="ln_a")(nn.Conv(4, (3, 3), use_bias=False, name="a")(h)))
    y = nn.LayerNorm(name="ln_b")(nn.Conv(5, (3, 3), use_bias=False, name="b")(y))
    h = jnp.tanh(h + y)
    h = nn.gelu(nn.Dense(6, name="hidden")(h.mean((1, 2))))
    return 200.0 * nn.Dense(3, name="head")(h)


def _random(variables, key):
  """Every leaf random (LayerNorm scales and biases too): no tie hides a permutation. Reads
  only the leaves' shapes (`jax.eval_shape`'s will do); scaled by numpy, bit for bit as jax
  would, and put on the device with no program per shape."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(tree, [
      jax.device_put(np.float32(0.7) * np.asarray(random_draws.normal(k, v.shape)))
      for k, v in zip(keys, leaves)])


@pytest.fixture(scope="module")
def net():
  model = TanhResNet()
  x = np.asarray(random_draws.normal(jax.random.key(0), (160, 72)), np.float32)
  a = _random(jax.eval_shape(model.init, jax.random.key(1), x[:2]), jax.random.key(2))
  a["params"]["head"]["bias"] = jax.device_put(np.zeros(3, np.float32))  # every class a label
  spec = derive_spec(model, a, x[:2])
  logits = jax.jit(functools.partial(apply_eval, model))(a, x)  # one program, not one per op
  y = np.argmax(np.asarray(logits), -1).astype(np.int32)
  return model, spec, a, x, y


def test_sites_are_read_off_the_spec(net):
  model, spec, a, x, _ = net
  assert len(spec.perm_to_axes) == 3  # stream (stem, b, ln_b), inner (a, ln_a), hidden
  reads = {s.path: s.perm for s in feature_sites(spec, model, a, x[:1])}
  assert list(reads) == ["params/a", "params/b", "params/hidden", "params/head"]
  assert reads["params/a"] == reads["params/hidden"]  # the stream's units, read twice
  assert len(set(reads.values())) == 3
  # Biased contractions are repaired themselves; bias-free ones at the norm after them.
  assert repair_sites(spec, model, a, x[:1]) == ("params/stem", "params/ln_a", "params/ln_b",
                                                 "params/hidden")


def test_feature_correlations_match_numpy_on_whole_arrays(net, monkeypatch):
  model, spec, a, x, _ = net
  b = _random(a, jax.random.key(9))
  monkeypatch.setattr(activation, "CHUNK", 7)  # many chunks merged, one of another size
  got = activation.feature_correlations(model, spec, a, b, x[:50])
  features = jax.jit(functools.partial(activation.hidden_features, model, spec))  # one program
  fa, fb = features(a, x[:50]), features(b, x[:50])
  want = {}
  for site, ua, ub in zip(feature_sites(spec, model, a, x[:1]), fa, fb):
    flat = lambda u: np.asarray(u, np.float64).reshape(-1, u.shape[-1])
    want[site.perm] = want.get(site.perm, 0) + activation.correlation(flat(ua), flat(ub))
  assert set(got) == set(want)
  for p in want:
    np.testing.assert_allclose(got[p], want[p], atol=2e-5)


@pytest.mark.parametrize("name", ["activation", "weight", "mergemany", "ste", "sinkhorn"])
def test_methods_recover_a_planted_permutation(net, name):
  model, spec, a, x, y = net
  planted = random_permutation(jax.random.key(4), perm_sizes(spec, a))
  b = apply_permutation(spec, planted, a)
  # Few, small learned steps: this teacher's loss on its own labels is not 0 everywhere, so
  # long runs of the learned methods may find blends with a lower loss than the planted copy.
  settings = MethodSettings(ste_steps=5, sinkhorn_steps=5, sinkhorn_lr=0.1)
  res = align_by(name, model, spec, stack([a, b]), 0, (), x[:100], y[:100], x[100:], y[100:],
                 settings)
  back, want = flatten(take(res.params, 1)), flatten(a)
  for k in want:
    np.testing.assert_allclose(back[k], want[k], atol=1e-5, err_msg=f"{name}: {k}")


def _captured(model, tree, x, paths):
  """Each layer's output by Flax's own `capture_intermediates` (one compiled program)."""
  _, state = jax.jit(lambda t, xb: model.apply(t, xb, capture_intermediates=True))(tree, x)
  inter = state["intermediates"]
  return {p: np.asarray(inter[p.split("/", 1)[1]]["__call__"][0], np.float64) for p in paths}


def test_repaired_sites_carry_the_interpolated_statistics(net):
  model, spec, a, x, _ = net
  b = _random(a, jax.random.key(5))
  sites = repair_sites(spec, model, a, x[:1])
  alpha = 0.4
  mixed = jax.tree_util.tree_map(  # by numpy: no program per leaf shape
      lambda u, v: jax.device_put((1 - alpha) * np.asarray(u) + alpha * np.asarray(v)), a, b)
  ca, cb = _captured(model, a, x, sites), _captured(model, b, x, sites)
  stats = lambda z: (z.reshape(-1, z.shape[-1]).mean(0), z.reshape(-1, z.shape[-1]).std(0))
  targets = {}
  for s in sites:
    (ma, sa), (mb, sb) = stats(ca[s]), stats(cb[s])
    targets[s] = (jax.device_put(((1 - alpha) * ma + alpha * mb).astype(np.float32)),
                  jax.device_put(((1 - alpha) * sa + alpha * sb).astype(np.float32)))
  fixed = repair_network(model, mixed, targets, jax.device_put(x))
  got = _captured(model, fixed, x, sites)  # a plain forward pass of the folded parameters
  for s in sites:
    mean, std = stats(got[s])
    np.testing.assert_allclose(mean, targets[s][0], atol=2e-4, err_msg=s)
    np.testing.assert_allclose(std, targets[s][1], rtol=2e-3, atol=2e-4, err_msg=s)
  # Only the sites' parameters changed.
  changed = {k for k, v in flatten(fixed).items() if not np.allclose(v, flatten(mixed)[k])}
  assert changed <= {f"{s}/{leaf}" for s in sites for leaf in ("kernel", "scale", "bias")}


def test_repaired_sweep_keeps_the_endpoints(net):
  model, spec, a, x, y = net
  zoo = stack([a, _random(a, jax.random.key(6))])
  sites = repair_sites(spec, model, a, x[:1])
  plain = pair_sweep(model, zoo, [[0, 1]], x, y)
  fixed = repaired_pair_sweep(model, zoo, [[0, 1]], x[:64], x, y, sites=sites)
  np.testing.assert_allclose(fixed.loss[:, [0, -1]], plain.loss[:, [0, -1]], rtol=1e-4)
  assert np.max(np.abs(fixed.loss[:, 5] - plain.loss[:, 5])) > 1e-3


class OwnParams(nn.Module):
  """A hidden layer computed from the module's own parameters, read the same way."""
  @nn.compact
  def __call__(self, x):
    w1 = self.param("w1", nn.initializers.normal(1.0), (x.shape[-1], 5))
    w2 = self.param("w2", nn.initializers.normal(1.0), (5, 4))
    return nn.Dense(3, name="head")(jnp.tanh(jnp.tanh(x @ w1) @ w2))


def test_activation_matching_names_permutations_no_layer_holds():
  model = OwnParams()
  x = np.asarray(random_draws.normal(jax.random.key(0), (20, 6)), np.float32)
  a = jax.jit(model.init)(jax.random.key(1), x)
  spec = derive_spec(model, a, x)
  assert len(spec.perm_to_axes) == 2  # w1's units (no Flax layer), w2's (read by head)
  with pytest.raises(LmcError, match="permutation\\(s\\) P_0; align this network by weight"):
    activation.activation_matching(model, spec, a, a, x)


def test_sinkhorn_steps_looped_from_the_host_equal_the_scanned_steps(net):
  from lmc_jax.align import sinkhorn
  from lmc_jax.nn.optim import cached_adam
  model, spec, a, x, y = net
  b = stack([_random(a, jax.random.key(k)) for k in (7, 8)])
  logits = {p: jax.device_put(np.stack([sinkhorn.start_logits(np.arange(n))] * 2))
            for p, n in perm_sizes(spec, a).items()}  # device_put: no program per shape
  head = (model, spec_key(spec), 4, 10, "expected", cached_adam(0.3))
  rest = (logits, a, b, jax.device_put(x), jax.device_put(y),
          jax.random.split(jax.random.key(0), 2))
  scanned = sinkhorn._train_jit(*head, False, True, *rest)
  looped = sinkhorn._train(*head, True, True, *rest)
  np.testing.assert_allclose(looped[1], scanned[1], rtol=1e-4, atol=1e-6)  # losses per step
  for p in logits:
    np.testing.assert_allclose(looped[0][p], scanned[0][p], atol=1e-5)
  start = np.asarray(logits["P_0"])[0]
  assert not np.allclose(scanned[0]["P_0"], sinkhorn.log_sinkhorn(start, 10))


def _activation_matching_undoes_a_planted_permutation(model, spec, a, x):
  """Activation matching of a randomly permuted copy of `a` gives back `a` exactly."""
  planted = random_permutation(jax.random.key(4), perm_sizes(spec, a))
  b = apply_permutation(spec, planted, a)
  found = activation.activation_matching(model, spec, a, b, x)
  back, want = flatten(apply_permutation(spec, found, b)), flatten(a)
  for k in want:
    np.testing.assert_allclose(back[k], want[k], atol=1e-6, err_msg=k)


class FlattenTanh(nn.Module):
  """conv -> tanh -> flatten -> Dense: the conv's channels are read through a view."""
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Conv(3, (3, 3), name="c0")(x.reshape(x.shape[0], 6, 6, 2)))
    return nn.Dense(3, name="head")(jnp.tanh(nn.Dense(4, name="d0")(h.reshape(h.shape[0], -1))))


def test_activation_matching_reads_units_through_a_view():
  model = FlattenTanh()
  x = np.asarray(random_draws.normal(jax.random.key(0), (64, 72)), np.float32)
  a = _random(jax.eval_shape(model.init, jax.random.key(1), x[:2]), jax.random.key(2))
  spec = derive_spec(model, a, x[:2])
  assert spec.views == {"params/d0/kernel": (6, 6, 3, 4)}
  sites = feature_sites(spec, model, a, x[:1])
  assert [(s.path, s.factors, s.factor) for s in sites] == [
      ("params/d0", (6, 6, 3), 2), ("params/head", (4,), 0)]
  _activation_matching_undoes_a_planted_permutation(model, spec, a, x)
  assert repair_sites(spec, model, a, x[:1]) == ("params/c0", "params/d0")


def test_activation_matching_on_a_transformer_recovers_a_planted_permutation():
  from tests.test_derive_spec_more import TokenTransformer, _randomised
  model = TokenTransformer()
  tokens = np.asarray(jax.random.randint(jax.random.key(0), (64, 5), 0, 20))
  a = _randomised(jax.jit(model.init)(jax.random.key(1), tokens[:2]))
  spec = derive_spec(model, a, tokens[:2])
  sites = feature_sites(spec, model, a, tokens[:1])
  # Query/key features are read by no layer (the attention product does): their sites are
  # the outputs of the query and key projections; every other unit is read by a layer.
  made = {(s.path, s.axis) for s in sites if s.side == "output"}
  assert made == {("params/attn/query", -1), ("params/attn/key", -1)}
  assert {s.perm for s in sites} == set(spec.perm_to_axes)
  _activation_matching_undoes_a_planted_permutation(model, spec, a, tokens)


class GroupedTanh(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Conv(8, (3, 3), name="c0")(x.reshape(x.shape[0], 6, 6, 2)))
    h = jnp.tanh(nn.Conv(8, (3, 3), feature_group_count=2, name="c1")(h))
    return nn.Dense(3, name="head")(jnp.tanh(nn.Dense(5, name="d0")(h.mean((1, 2)))))


def test_activation_matching_through_a_grouped_convolution():
  model = GroupedTanh()
  x = np.asarray(random_draws.normal(jax.random.key(0), (64, 72)), np.float32)
  a = _random(jax.eval_shape(model.init, jax.random.key(1), x[:2]), jax.random.key(2))
  spec = derive_spec(model, a, x[:2])
  # c1 reads 8 channels = (2 groups, 4 per group) through a kernel axis of 4: the groups
  # are averaged over, the 4 within-group channels correlated.
  c1 = [s for s in feature_sites(spec, model, a, x[:1]) if s.path == "params/c1"]
  assert [(s.factors, s.factor, s.mean_factors) for s in c1] == [((2, 4), 1, (0,))]
  _activation_matching_undoes_a_planted_permutation(model, spec, a, x)
