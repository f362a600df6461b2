"""`python -m experiments.bench` from a checkout: `lmc-bench` (lmc_jax.cli.bench)."""
from lmc_jax.cli import bench

if __name__ == "__main__":
  bench.run()
