"""Numbers lmc_jax computes, written to one `.npz`: the suite compiles at a lower LLVM
optimisation level than users run (`tests/conftest.py`, SUITE_XLA_FLAGS), and
`tests/test_suite_compiler.py` runs this probe under both levels and asks for the same bits.

It covers what XLA compiles for the library: Flax's initializers (normal and uniform draws),
MLP zoos trained in one `lax.scan` per epoch (dense layers, LayerNorm, ReLU and tanh, AdamW
and SGD with momentum, cosine and one-cycle schedules) and their pair sweeps (names
`mlp_*`), and a conv zoo with BatchNorm on images (augmentation included) and its sweep
with the statistics reset along each line (names `conv_bn/*`).

  python -m tests.helpers.numerics_probe OUT.npz
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.lmc.batchnorm import reset_batches, reset_pair_sweep
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn.architectures import model_for
from lmc_jax.tree_utils import flatten
from lmc_jax.zoo.training import train_zoo


def _zoo(out: dict, name: str, config, dataset, sweep) -> None:
  zoo = train_zoo(config, dataset, log=None)
  for path, leaf in flatten(zoo.params).items():
    out[f"{name}/params/{path}"] = np.asarray(leaf)
  out[f"{name}/train_loss"] = np.asarray(zoo.history["train_loss"])
  model, pairs = model_for(config), all_pairs(config.train.num_models)
  curves = sweep(model, zoo.params, pairs, dataset)
  out[f"{name}/sweep_loss"], out[f"{name}/sweep_acc"] = (np.asarray(curves.loss),
                                                         np.asarray(curves.acc))


def _plain_sweep(model, params, pairs, dataset):
  return pair_sweep(model, params, pairs, dataset.x_test, dataset.y_test, batch_size=64)


def _reset_sweep(model, params, pairs, dataset):
  x_batches = reset_batches(dataset.x_train, 2, 16)
  return reset_pair_sweep(model, params, pairs, x_batches, dataset.x_test, dataset.y_test)


def probe(folder: Path) -> dict:
  """Every number of the probe, by name."""
  out = {}
  moons = default_config("moons", hidden=(16, 16), num_models=2, epochs=2, batch_size=128,
                         layernorm="before_relu")
  _zoo(out, "mlp_adamw", moons, load_dataset(moons), _plain_sweep)
  sgd = default_config("moons", hidden=(16,), num_models=2, epochs=2, batch_size=128,
                       activation="tanh", optimizer="sgd", schedule="onecycle", lr=0.05,
                       init="kaiming_normal")
  _zoo(out, "mlp_sgd_tanh", sgd, load_dataset(sgd), _plain_sweep)

  rng = np.random.default_rng(0)
  images = folder / "images.npz"
  np.savez(images, x_train=rng.integers(0, 256, (64, 8, 8, 3), np.uint8),
           y_train=rng.integers(0, 4, 64), x_test=rng.integers(0, 256, (32, 8, 8, 3), np.uint8),
           y_test=rng.integers(0, 4, 32))
  conv = default_config(f"npz:{images}", arch="vgg_small", hidden=(1,), norm="batchnorm",
                        num_models=2, epochs=1, batch_size=32, optimizer="sgd",
                        augment="crop_flip")
  _zoo(out, "conv_bn", conv, load_dataset(conv), _reset_sweep)
  return out


def main(argv) -> int:
  if len(argv) != 2:
    print("usage: python -m tests.helpers.numerics_probe OUT.npz", file=sys.stderr)
    return 2
  with tempfile.TemporaryDirectory() as folder:
    np.savez(argv[1], **probe(Path(folder)))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
