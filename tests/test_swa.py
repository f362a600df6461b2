import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.zoo.swa import running_mean, swa
from lmc_jax.zoo.training import train_zoo


def test_swa_samples_and_running_average():
  config = default_config("moons", hidden=(16,), num_models=1, epochs=10)
  data = load_dataset(config)
  zoo = train_zoo(config, data, log=None)
  start = jax.tree_util.tree_map(  # taken by numpy: no program per leaf shape
      lambda v: jax.device_put(np.asarray(v)[0]), zoo.params)
  run = swa(config, data, start, jax.random.key(3), epochs=4, lr=0.01)
  leaves = jax.tree_util.tree_leaves(run.samples)
  assert leaves[0].shape[0] == 4
  # The last running average is the plain mean of the samples, the first is sample 0.
  for s, a in zip(leaves, jax.tree_util.tree_leaves(run.averages)):
    a, s = np.asarray(a), np.asarray(s)
    np.testing.assert_allclose(a[-1], np.mean(s, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[0], s[0], rtol=1e-6)
  # Sample losses are those of the stored samples.
  loss, _ = evaluate_zoo(model_for(config), run.samples, data.x_test, data.y_test)
  np.testing.assert_allclose(run.sample_loss, loss, rtol=1e-6)
  # Consecutive samples differ: training went on.
  assert not np.allclose(leaves[0][0], leaves[0][1])


def test_running_mean_against_a_loop():
  x = {"a": jnp.arange(12.0).reshape(4, 3)}
  got = np.asarray(running_mean(x)["a"])
  want = np.stack([np.arange(12.0).reshape(4, 3)[: k + 1].mean(0) for k in range(4)])
  np.testing.assert_allclose(got, want)
