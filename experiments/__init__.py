"""`python -m experiments.<name>` from a checkout: shims over `lmc_jax.cli.<name>`, which an
install also offers as console scripts `lmc-<name>` (this package is not installed)."""
