"""`python -m experiments.fetch` from a checkout: `lmc-fetch` (lmc_jax.cli.fetch)."""
from lmc_jax.cli import fetch

if __name__ == "__main__":
  fetch.run()
