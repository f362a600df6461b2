"""`python -m experiments.barrier` from a checkout: `lmc-barrier` (lmc_jax.cli.barrier)."""
from lmc_jax.cli import barrier

if __name__ == "__main__":
  barrier.run()
