"""Stochastic weight averaging samples (the study's section 3.4 and 4.3, E4).

Training of one trained model continues at a constant learning rate with a fresh
optimizer; the weights after each epoch are the samples, and the running average after k
epochs is the mean of the first k samples.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax import host_arrays
from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import Dataset
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.nn.forward import split_tree
from lmc_jax.nn.optim import make_optimizer, make_schedule
from lmc_jax.tree_utils import stack
from lmc_jax.zoo.training import make_epoch


class SwaRun(NamedTuple):
  samples: dict  # params stacked over epochs (E, ...): the weights after each epoch
  averages: dict  # (E, ...): running mean of the first k + 1 samples
  sample_loss: np.ndarray  # (E,) test loss of each sample
  average_loss: np.ndarray  # (E,)
  start_loss: float  # test loss of the model SWA started from


def running_mean(samples):
  """(E, ...) -> (E, ...): entry k is the mean of entries 0..k."""
  def one(x):
    counts = jnp.arange(1, x.shape[0] + 1, dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.cumsum(x, axis=0) / counts
  return jax.tree_util.tree_map(one, samples)


def swa(config: ZooConfig, data: Dataset, params, key, epochs: int = 10,
        lr: float = 0.05) -> SwaRun:
  """Continues training `params` (one model's variables dict) for `epochs` epochs at
  constant `lr` with the zoo's optimizer; epoch e's data order comes from `fold_in(key, e)`."""
  model, optim = model_for(config), config.optim
  tx = make_optimizer(optim.optimizer, make_schedule("constant", lr, 1), optim.weight_decay,
                      optim.momentum)
  epoch = jax.jit(make_epoch(model, tx, config.train.batch_size))
  x, y = to_device(data.x_train), to_device(data.y_train)
  p, state, samples = params, tx.init(split_tree(params)[0]), []
  for e in range(epochs):
    p, state, _ = epoch(p, state, jax.random.fold_in(key, e), x, y)
    samples.append(p)
  stacked = stack(samples, host_arrays.stack)
  averages = running_mean(stacked)
  sample_loss, _ = evaluate_zoo(model, stacked, data.x_test, data.y_test)
  average_loss, _ = evaluate_zoo(model, averages, data.x_test, data.y_test)
  start = jax.tree_util.tree_map(lambda v: jnp.asarray(v)[None], params)
  start_loss = float(evaluate_zoo(model, start, data.x_test, data.y_test)[0][0])
  return SwaRun(stacked, averages, sample_loss, average_loss, start_loss)
