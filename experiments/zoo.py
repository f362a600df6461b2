"""`python -m experiments.zoo` from a checkout: `lmc-zoo` (lmc_jax.cli.zoo)."""
from lmc_jax.cli import zoo

if __name__ == "__main__":
  zoo.run()
