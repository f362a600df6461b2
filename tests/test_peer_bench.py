"""The images/s comparison against PyTorch on a tiny conv zoo: every side runs, the rates
are the counts over the medians, and without torch the reason is given."""
import numpy as np

from lmc_jax.analysis import torch_peers
from lmc_jax.analysis.peer_bench import PeerTimes, bench_peer
from lmc_jax.config import default_config
from lmc_jax.data.datasets import Dataset
from lmc_jax.nn.architectures import model_for


def test_images_per_second_are_counts_over_seconds():
  t = PeerTimes(batch=32, models=3, train_samples=100, step_s=0.5, epoch_s=2.0,
                baseline_step_s=1.0, baseline_epoch_s=None, torch_step_s=0.25,
                torch_epoch_s=3.0, torch_skipped=None)
  assert t.images_per_s("lmc_jax", "step") == 64 and t.images_per_s("baseline", "step") == 32
  assert t.images_per_s("lmc_jax", "epoch") == 150 and t.images_per_s("torch", "epoch") == 100
  assert t.images_per_s("baseline", "epoch") is None


def test_every_side_of_a_tiny_conv_zoo_is_timed():
  rng = np.random.default_rng(0)
  data = Dataset(rng.normal(size=(48, 784)).astype(np.float32),
                 rng.integers(0, 10, 48).astype(np.int32),
                 rng.normal(size=(8, 784)).astype(np.float32),
                 rng.integers(0, 10, 8).astype(np.int32), num_classes=10)
  config = default_config("mnist", arch="vgg_small", hidden=(1,), num_models=2, epochs=1,
                          batch_size=32)
  model = model_for(config)
  t = bench_peer(config, data, model, baseline=model.clone(kernel_grad="lax"), repeats=1,
                 step_repeats=1)
  assert (t.batch, t.models, t.train_samples) == (32, 2, 48)
  assert min(t.step_s, t.epoch_s, t.baseline_step_s, t.baseline_epoch_s) > 0
  if torch_peers.available() is None:
    assert t.torch_skipped is None and min(t.torch_step_s, t.torch_epoch_s) > 0
  else:
    assert t.torch_skipped == torch_peers.available() and t.torch_step_s is None
