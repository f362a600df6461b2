"""`--dataset=tfds:NAME`: an image-classification dataset that TFDS prepares here from
arrays the test makes (a builder defined in the test), read through tensorflow-datasets into
the same checked arrays; image shape and classes from the dataset's info. Skipped where the
[tfds] extra (tensorflow-datasets and TensorFlow) is not installed."""
import json

import numpy as np
import pytest

from lmc_jax.config import RunOptions, default_config
from lmc_jax.data import tfds as tfds_data
from lmc_jax.data.datasets import dataset_info, dataset_slug, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.result_files import ZOO_JSON
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.runs import run_zoo, zoo_dirname
from tests.helpers.cli import refused, run_cli

tfds = pytest.importorskip("tensorflow_datasets", reason="the [tfds] extra is not installed "
                           "(pip install .[tfds])")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install .[tfds])")

NAME = "tiny_gray_for_lmc"
SHAPE, CLASSES = (6, 5, 1), 3
RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (18,) + SHAPE).astype(np.uint8)
LABELS = np.arange(18) % CLASSES


class TinyGrayForLmc(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=SHAPE),
            "label": tfds.features.ClassLabel(num_classes=CLASSES)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(slice(0, 12)),
            "test": self._generate_examples(slice(12, 18))}

  def _generate_examples(self, part):
    for k in range(18)[part]:
      yield k, {"image": IMAGES[k], "label": int(LABELS[k])}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  TinyGrayForLmc(data_dir=str(d)).download_and_prepare()
  return d


def _rows_of(x_rows, images):
  """Which of `images` each standardised row is (the oracle: numpy on the images written)."""
  tr = IMAGES[:12].astype(np.float64) / 255
  mean, std = tr.mean(axis=(0, 1, 2)), tr.std(axis=(0, 1, 2))
  want = ((images.astype(np.float64) / 255 - mean) / std).reshape(len(images), -1)
  return [int(np.flatnonzero(np.abs(want - r).max(axis=1) < 1e-5)[0]) for r in x_rows]


def test_info_and_arrays_come_from_tfds(data_dir):
  config = default_config(f"tfds:{NAME}", hidden=(8,), num_models=2, epochs=1)
  info = dataset_info(config.data, data_dir)
  assert (info.d_in, info.num_classes, info.image_shape, info.n_train, info.n_test) == \
      (30, 3, SHAPE, 12, 6)
  data = load_dataset(config.data, data_dir)
  assert data.x_train.dtype == np.float32 and data.x_train.shape == (12, 30)
  assert data.num_classes == 3 and data.image_shape == SHAPE
  order = _rows_of(data.x_train, IMAGES)
  assert sorted(order) == list(range(12))  # every training image once, PNG is lossless
  np.testing.assert_array_equal(data.y_train, LABELS[order])
  test_order = _rows_of(data.x_test, IMAGES)
  assert sorted(test_order) == list(range(12, 18))
  np.testing.assert_array_equal(data.y_test, LABELS[test_order])
  assert dataset_slug(f"tfds:{NAME}") == f"tfds_{NAME}"


def test_a_zoo_trains_and_reads_back(data_dir, tmp_path):
  config = default_config(f"tfds:{NAME}", hidden=(8,), num_models=2, epochs=2)
  d = tmp_path / zoo_dirname(config)
  tfds_data.use_data_dir(data_dir)
  try:
    record = run_zoo(config, d, RunOptions(data_dir=str(data_dir)))
    assert record.num_models == 2 and record.data_name.startswith("TFDS")
    zoo = open_zoo(d)  # the network built again from the info on disk
    assert zoo.info.num_classes == 3 and zoo.info.d_in == 30
  finally:
    tfds_data.use_data_dir(None)


def test_the_zoo_command_on_a_tfds_dataset(data_dir, tmp_path):
  out = tmp_path / "runs"
  r = run_cli("zoo", f"--dataset=tfds:{NAME}", f"--data_dir={data_dir}", f"--out={out}",
              "--width=4", "--num_models=2", "--epochs=1")
  assert r.returncode == 0, r.stderr[-3000:]
  (zoo,) = [p for p in out.glob(f"tfds_{NAME}*") if p.is_dir()]
  assert json.loads((zoo / ZOO_JSON).read_text())["config"]["data"]["dataset"] == f"tfds:{NAME}"
  r = run_cli("barrier", f"--zoo={zoo}", f"--data_dir={data_dir}",
              f"--figures={tmp_path / 'figures'}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert (zoo / "barrier.json").is_file()
  refused(run_cli("zoo", "--dataset=tfds:no_such_set_here", f"--data_dir={data_dir}",
                  f"--out={tmp_path / 'none'}", "--width=4"),
          "'no_such_set_here' is not prepared in", "--data_dir")
  assert not (tmp_path / "none").exists()


def test_not_prepared_is_refused_in_one_sentence(tmp_path):
  with pytest.raises(LmcError, match="is not prepared in") as e:
    dataset_info(default_config("tfds:mnist_corrupted_absent").data, tmp_path)
  assert "\n" not in str(e.value)
