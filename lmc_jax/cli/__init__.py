"""Command-line entry points: `lmc-zoo`, `lmc-barrier`, ... (also `python -m lmc_jax.cli.zoo`,
and `python -m experiments.zoo` from a checkout). Each parses flags, calls the library and
prints."""
