"""Numbers lmc_jax computes, written to one `.npz`: the suite compiles with other XLA flags
than users run (`tests/conftest.py`, `suite_flags`), and `tests/test_suite_compiler.py`
runs this probe under both and asks for the same numbers to float32 rounding.

It covers what XLA compiles for the study's networks: their initializers (normal and
uniform draws), MLP zoos trained in one `lax.scan` per epoch (dense layers, LayerNorm, ReLU
and tanh, AdamW and SGD with momentum, cosine and one-cycle schedules) and their pair
sweeps. (Conv nets and transformers are left out: their reductions, BatchNorm's statistics
among them, round differently under the suite's flags, which its tolerances allow.)

  python -m tests.helpers.numerics_probe OUT.npz
"""
import sys

import numpy as np

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn.architectures import model_for
from lmc_jax.tree_utils import flatten
from lmc_jax.zoo.training import train_zoo


def _zoo(out: dict, name: str, config, dataset) -> None:
  zoo = train_zoo(config, dataset, log=None)
  for path, leaf in flatten(zoo.params).items():
    out[f"{name}/params/{path}"] = np.asarray(leaf)
  out[f"{name}/train_loss"] = np.asarray(zoo.history["train_loss"])
  model, pairs = model_for(config), all_pairs(config.train.num_models)
  curves = pair_sweep(model, zoo.params, pairs, dataset.x_test, dataset.y_test, batch_size=64)
  out[f"{name}/sweep_loss"], out[f"{name}/sweep_acc"] = (np.asarray(curves.loss),
                                                         np.asarray(curves.acc))


def probe() -> dict:
  """Every number of the probe, by name."""
  out = {}
  moons = default_config("moons", hidden=(16, 16), num_models=2, epochs=2, batch_size=128,
                         layernorm="before_relu")
  _zoo(out, "mlp_adamw", moons, load_dataset(moons))
  sgd = default_config("moons", hidden=(16,), num_models=2, epochs=2, batch_size=128,
                       activation="tanh", optimizer="sgd", schedule="onecycle", lr=0.05,
                       init="kaiming_normal")
  _zoo(out, "mlp_sgd_tanh", sgd, load_dataset(sgd))
  return out


def main(argv) -> int:
  if len(argv) != 2:
    print("usage: python -m tests.helpers.numerics_probe OUT.npz", file=sys.stderr)
    return 2
  np.savez(argv[1], **probe())
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
