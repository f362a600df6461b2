"""Helpers shared by the tests (`from tests.helpers import random_params`)."""
import jax
import jax.numpy as jnp

from lmc_jax.nn import random_draws
from lmc_jax.nn.models import make_mlp


def random_params(key, hidden, d_in=3, d_out=2, layernorm="none"):
  """Params of an MLP with every leaf random (biases and LayerNorm too), so that no
  permutation can be hidden by zeros or ones."""
  model = make_mlp(hidden, d_out, layernorm)
  params = jax.eval_shape(model.init, key, jnp.zeros((1, d_in)))["params"]  # shapes only
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
  leaves = [random_draws.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)]
  return model, jax.tree_util.tree_unflatten(tree, leaves)


def saved_moons_zoo(directory, width: int, num_models: int = 3, epochs: int = 2):
  """Trains a small one-hidden-layer Moons zoo and saves it to `directory` as the zoo entry
  point would; returns (config, the trained Zoo)."""
  from lmc_jax.config import default_config
  from lmc_jax.data.datasets import load_dataset
  from lmc_jax.zoo.io import save_zoo
  from lmc_jax.zoo.training import train_zoo
  config = default_config("moons", hidden=(width,), num_models=num_models, epochs=epochs)
  zoo = train_zoo(config, load_dataset(config), log=None)
  save_zoo(directory, config, zoo.params, zoo.metrics, history=zoo.history)
  return config, zoo


def zoo_record(config, num_models: int = 3, test_loss: float = 0.5):
  """The `ZooRecord` of a zoo of `config` that was never trained: `num_models` models, each
  with `test_loss` (what the figures scale by) and nothing diverged or collapsed."""
  from lmc_jax.records import ModelMetrics, ZooRecord
  metrics = ModelMetrics(test_loss, test_loss, 0.9, 0.9)
  return ZooRecord(config.replace(num_models=num_models), "0" * 64, (metrics,) * num_models)
