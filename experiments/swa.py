"""`python -m experiments.swa` from a checkout: `lmc-swa` (lmc_jax.cli.swa)."""
from lmc_jax.cli import swa

if __name__ == "__main__":
  swa.run()
