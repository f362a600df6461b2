"""Run from the repository root as `python -m tests.helpers.many_devices`, with
XLA_FLAGS=--xla_force_host_platform_device_count=4: trains a zoo of 5 models
(not a multiple of 4) and sweeps its pairs on 4 devices and on 1, and prints the largest
differences as JSON. Used by tests/test_sharding.py (the flag must be set before JAX starts,
so this runs in its own process)."""
import json

import jax
import numpy as np

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn.architectures import model_for
from lmc_jax.zoo.sharding import model_mesh, split_models
from lmc_jax.zoo.training import train_zoo

config = default_config("moons", hidden=(16,), num_models=5, epochs=4, batch_size=128)
data = load_dataset(config)
lines = []
many = train_zoo(config, data, log=lines.append)
one = train_zoo(config, data, log=None, devices=jax.devices()[:1])
params_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                  for a, b in zip(jax.tree_util.tree_leaves(many.params),
                                  jax.tree_util.tree_leaves(one.params)))
metric_diff = max(abs(a[k] - b[k]) for a, b in zip(many.metrics, one.metrics)
                  for k in ("train_loss", "test_loss", "train_acc", "test_acc"))
model, pairs = model_for(config), all_pairs(config.train.num_models)
sweep_many = pair_sweep(model, one.params, pairs, data.x_test, data.y_test, chunk=3)
sweep_one = pair_sweep(model, one.params, pairs, data.x_test, data.y_test, chunk=3,
                       devices=jax.devices()[:1])
print(json.dumps({
    "devices": jax.device_count(), "models": len(many.metrics),
    "params_max_abs_diff": params_diff, "metrics_max_abs_diff": metric_diff,
    "sweep_max_abs_diff": float(np.max(np.abs(sweep_many.loss - sweep_one.loss))),
    "sweep_shape": list(sweep_many.loss.shape),
    "log": lines[0],
    "shard_rows": [s.data.shape[0] for s in
                   split_models(np.zeros((8, 3)), model_mesh()).addressable_shards]}))
