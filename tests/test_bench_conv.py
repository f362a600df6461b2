"""The benchmark's library functions on a tiny conv zoo: timings, FLOPs and agreement."""
import jax
import numpy as np

from lmc_jax.analysis.benchmarks import bench_pair_sweep, bench_training, forward_flops
from lmc_jax.config import default_config
from lmc_jax.data.datasets import Dataset
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import abstract_variables, mlp_matmul_flops
from lmc_jax.zoo.training import init_params, model_keys


def _images(n_train=64, n_test=16):
  rng = np.random.default_rng(0)
  return Dataset(rng.normal(size=(n_train, 784)).astype(np.float32),
                 rng.integers(0, 10, n_train).astype(np.int32),
                 rng.normal(size=(n_test, 784)).astype(np.float32),
                 rng.integers(0, 10, n_test).astype(np.int32), num_classes=10)


def test_forward_flops_count_convolutions_and_match_the_mlp_count():
  conv = model_for(default_config("mnist", arch="vgg_small", hidden=(1,)))
  # The counts read only the shapes (a traced forward pass): no initializer runs.
  tree = abstract_variables(conv, 784)
  # 3x3 convs 1->16 at 28x28, 16->32 at 14x14, 32->64 at 7x7 ('SAME'), then Dense 64->10.
  expected = 2 * (28 * 28 * 9 * 16 + 14 * 14 * 9 * 16 * 32 + 7 * 7 * 9 * 32 * 64 + 64 * 10)
  assert forward_flops(conv, tree, 784) == expected
  mlp = model_for(default_config("mnist", hidden=(8, 8, 8)))
  params = abstract_variables(mlp, 784)
  assert forward_flops(mlp, params, 784) == mlp_matmul_flops(params)


def test_bench_training_and_sweep_run_on_a_batchnorm_conv_zoo():
  # Compilation is most of this test's time (a train step is compiled three times: the
  # zoo's, the per-epoch loop's and the per-step loop's).
  config = default_config("mnist", arch="vgg_small", hidden=(1,), num_models=2, epochs=1,
                          batch_size=32)
  assert config.model.norm == "batchnorm"
  data, model = _images(), model_for(config)
  train = bench_training(config, data)
  for k in ("zoo_s", "loop_s", "step_loop_s", "compile_zoo_s", "compile_loop_s"):
    assert getattr(train, k) > 0, k
  net_flops = forward_flops(model, abstract_variables(model, 784), 784)  # shapes only
  assert train.flops == 3 * net_flops * 64 * 2  # forward and backward, 64 samples, 2 models
  assert train.bytes > 0 and train.baseline_models == 2
  assert train.host_loops == (jax.devices()[0].platform == "cpu")

  # The sweep needs no training: the two initial networks (BatchNorm statistics included,
  # interpolated on every side, no reset) are a pair like any other.
  params = init_params(model, 784, model_keys(config.train.seed, [0, 1])[0])
  sweep = bench_pair_sweep(config, data, params)
  assert sweep.pairs == 1 and sweep.sweep_s > 0 and sweep.loop_s > 0
  assert sweep.study_loop_s > 0 and sweep.flops == net_flops * 11 * 16
  assert sweep.max_abs_diff < 1e-4  # the loops and the sweep compute the same losses
