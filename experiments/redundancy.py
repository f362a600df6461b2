"""`python -m experiments.redundancy` from a checkout: `lmc-redundancy` (lmc_jax.cli.redundancy)."""
from lmc_jax.cli import redundancy

if __name__ == "__main__":
  redundancy.run()
