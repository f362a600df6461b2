"""The benchmark's floor arithmetic, checked by hand."""
import jax

from lmc_jax.analysis.benchmarks import DeviceRates, floor_s
from lmc_jax.nn.models import mlp_matmul_flops, num_params
from tests.helpers import random_params


def test_floor_is_the_slower_of_compute_and_memory():
  rates = DeviceRates(copy_bytes_per_s=1e11, matmul_flops_per_s=1e12, bf16_matmul_flops_per_s=4e12)
  assert floor_s(2e12, 1e11, rates) == (2.0, "compute")
  assert floor_s(1e12, 3e11, rates) == (3.0, "memory")
  assert floor_s(4e12, 1e11, rates.at("bf16")) == (1.0, "compute")


def test_flop_and_parameter_counts_of_a_small_mlp():
  _, params = random_params(jax.random.key(0), (4, 5), d_in=3, d_out=2)
  assert mlp_matmul_flops(params) == 2 * (3 * 4 + 4 * 5 + 5 * 2)
  assert num_params(params) == (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)
