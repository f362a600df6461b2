"""`python -m experiments.plane` from a checkout: `lmc-plane` (lmc_jax.cli.plane)."""
from lmc_jax.cli import plane

if __name__ == "__main__":
  plane.run()
