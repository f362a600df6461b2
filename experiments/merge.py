"""`python -m experiments.merge` from a checkout: `lmc-merge` (lmc_jax.cli.merge)."""
from lmc_jax.cli import merge

if __name__ == "__main__":
  merge.run()
