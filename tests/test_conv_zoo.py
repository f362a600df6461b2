"""Networks other than the MLP through the zoo machinery: the pair sweep over whole variables
dicts, BatchNorm reset, derived specs of the conv nets, and conv zoos trained vmapped."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import check_spec, derive_spec
from lmc_jax.align.weight import weight_matching
from lmc_jax.lmc.batchnorm import reset_batch_stats, reset_batches, reset_pair_sweep
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn import random_draws
from lmc_jax.nn.conv import make_conv_net
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.symmetry.spec import apply_permutation, perm_sizes, random_permutation
from lmc_jax.tree_utils import flatten, stack, take


class TwoBN(nn.Module):
  """Dense -> BN -> ReLU -> Dense -> BN -> ReLU -> Dense, written out for a numpy oracle."""
  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.8, epsilon=1e-5)
    h = nn.relu(bn()(nn.Dense(5)(x)))
    h = nn.relu(bn()(nn.Dense(4)(h)))
    return nn.Dense(3)(h)


def test_batchnorm_reset_equals_a_plain_recomputation():
  model, x = TwoBN(), random_draws.normal(jax.random.key(0), (24, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  batches = np.asarray(x).reshape(4, 6, 3)
  got = flatten(reset_batch_stats(model, variables, jax.device_put(batches)))
  p = {k: np.asarray(v, np.float64) for k, v in flatten(variables["params"]).items()}
  means, vars_ = [[], []], [[], []]
  for xb in batches:  # each batch normalised by its own statistics, layer after layer
    h = xb.astype(np.float64)
    for i in range(2):
      z = h @ p[f"Dense_{i}/kernel"] + p[f"Dense_{i}/bias"]
      mu, var = z.mean(0), z.var(0)
      means[i].append(mu)
      vars_[i].append(var)
      z = (z - mu) / np.sqrt(var + 1e-5) * p[f"BatchNorm_{i}/scale"] + p[f"BatchNorm_{i}/bias"]
      h = np.maximum(z, 0)
  for i in range(2):
    np.testing.assert_allclose(got[f"batch_stats/BatchNorm_{i}/mean"], np.mean(means[i], 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[f"batch_stats/BatchNorm_{i}/var"], np.mean(vars_[i], 0),
                               rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got["params/Dense_0/kernel"], variables["params"]["Dense_0"]
                                ["kernel"])


def _zoo(model, n, x, seed=0):
  init = jax.jit(model.init)  # one program, not one per layer op
  return stack([init(jax.random.key(seed + k), x) for k in range(n)])


def _loop_curve(model, zoo, i, j, alphas, x, y, reset=None):
  @jax.jit  # one network at one alpha, as one program
  def point(a, ends):
    mixed = jax.tree_util.tree_map(lambda u, v: (1 - a) * u + a * v, *ends)
    if reset is not None:
      mixed = reset_batch_stats(model, mixed, reset)
    loss, correct = loss_and_correct(apply_eval(model, mixed, x), y)
    return loss.mean(), correct.mean()
  ends = take(zoo, i), take(zoo, j)
  return np.asarray([[float(v) for v in point(a, ends)] for a in alphas])


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm"])
def test_pair_sweep_of_conv_variables_equals_a_plain_loop(norm):
  model = make_conv_net("vgg_small", 1, 10, (8, 8, 1), norm)
  x = random_draws.normal(jax.random.key(2), (10, 64))
  y = jnp.arange(10) % 10
  zoo = _zoo(model, 2, x)
  pairs, alphas = all_pairs(2), np.linspace(0, 1, 3)
  if norm == "batchnorm":
    batches = reset_batches(np.asarray(x), 2, 5)
    curves = reset_pair_sweep(model, zoo, pairs, batches, np.asarray(x), np.asarray(y), alphas,
                              batch_size=4)
  else:
    batches = None
    curves = pair_sweep(model, zoo, pairs, np.asarray(x), np.asarray(y), alphas, batch_size=4)
  for p, (i, j) in enumerate(pairs):
    want = _loop_curve(model, zoo, i, j, alphas, x, y, batches)
    np.testing.assert_allclose(curves.loss[p], want[:, 0], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(curves.acc[p], want[:, 1], atol=1e-6)


@pytest.mark.parametrize("arch, norm", [("vgg_small", "layernorm"), ("resnet20", "batchnorm")])
def test_derived_specs_of_the_conv_nets_hold_and_recover_planted_permutations(arch, norm):
  model = make_conv_net(arch, 1, 10, (8, 8, 3), norm)
  x = random_draws.normal(jax.random.key(3), (4, 192))
  # One program for VGG's layers (each of its own shape); ResNet-20's blocks repeat theirs,
  # so op by op it compiles fewer and smaller programs.
  init = jax.jit(model.init) if arch == "vgg_small" else model.init
  variables = init(jax.random.key(4), x)
  # Running statistics with values a permutation would show.
  variables = {**variables, **jax.tree_util.tree_map(
      lambda v: v + random_draws.uniform(jax.random.key(5), v.shape),
      {k: v for k, v in variables.items() if k != "params"})}
  spec = derive_spec(model, variables, x)
  assert check_spec(model, variables, spec, x) < 1e-4
  if arch == "resnet20":
    # Identity shortcuts tie each stage's blocks into one stream: 3 streams, plus the
    # inner units of the 9 blocks.
    assert len(spec.perm_to_axes) == 3 + 9
  planted = random_permutation(jax.random.key(6), perm_sizes(spec, variables))
  shuffled = apply_permutation(spec, planted, variables)
  found = weight_matching(jax.random.key(0), spec, variables, shuffled).perm
  back = flatten(apply_permutation(spec, found, shuffled))
  for k, v in flatten(variables).items():
    np.testing.assert_allclose(back[k], v, atol=1e-6)


def _images(n, seed):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def test_a_conv_zoo_equals_its_models_trained_one_at_a_time(monkeypatch):
  from lmc_jax.config import default_config
  from lmc_jax.data.datasets import Dataset
  from lmc_jax.execution import ACCELERATOR_PATHS_ENV, plan_from_environment
  from lmc_jax.zoo import training
  # SGD: Adam's normalisation would blow float rounding in near-zero gradients up.
  config = default_config("mnist", arch="vgg_small", hidden=(1,), num_models=2, epochs=2,
                          batch_size=16, optimizer="sgd", schedule="constant", lr=0.05)
  assert config.model.norm == "batchnorm" and config.train.augment == "none"
  data = Dataset(*_images(24, 0), *_images(8, 1), num_classes=10)  # two steps an epoch
  zoo = training.train_zoo(config, data, log=None)
  assert "batch_stats" in zoo.params
  for k in (1,):  # model 1 alone: the same network as in the zoo
    alone = training.train_zoo(config, data, model_ids=[k], log=None)
    for a, b in zip(jax.tree_util.tree_leaves(alone.params),
                    jax.tree_util.tree_leaves(take(zoo.params, np.array([k])))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The accelerator's path (all models one vmap, each epoch one scan) on this CPU.
  forced = plan_from_environment(environ={ACCELERATOR_PATHS_ENV: "1"})
  vmapped = training.train_zoo(config.replace(seed=0), data, log=None, plan=forced)
  for a, b in zip(jax.tree_util.tree_leaves(vmapped.params), jax.tree_util.tree_leaves(zoo.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
