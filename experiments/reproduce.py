"""`python -m experiments.reproduce` from a checkout: `lmc-reproduce` (lmc_jax.cli.reproduce)."""
from lmc_jax.cli import reproduce

if __name__ == "__main__":
  reproduce.run()
