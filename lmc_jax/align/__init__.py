"""Alignment: permutation specs, the registry of alignment methods and the methods themselves.

Importing the package registers every built-in method (each module registers its own) and
then the methods of installed plug-ins (entry-point group `lmc_jax.align_methods`).
"""
from lmc_jax.align import registry
# The order of registration is the order `--help` lists the methods in.
from lmc_jax.align import weight, activation, ste, sinkhorn, merge_many, exact  # noqa: F401,E401

registry.load_plugins()
