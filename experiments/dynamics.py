"""`python -m experiments.dynamics` from a checkout: `lmc-dynamics` (lmc_jax.cli.dynamics)."""
from lmc_jax.cli import dynamics

if __name__ == "__main__":
  dynamics.run()
