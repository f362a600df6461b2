"""Alignment: permutation specs, the registry of alignment methods and the methods themselves.

Importing the package registers every built-in method (each module registers its own) and
then the methods of installed plug-ins (entry-point group `lmc_jax.align_methods`).
"""
# isort: off
# The order of import is the order of registration, which `--help` lists the methods in.
from lmc_jax.align import registry
from lmc_jax.align import weight  # noqa: F401
from lmc_jax.align import activation  # noqa: F401
from lmc_jax.align import ste  # noqa: F401
from lmc_jax.align import sinkhorn  # noqa: F401
from lmc_jax.align import merge_many  # noqa: F401
from lmc_jax.align import exact  # noqa: F401
# isort: on

registry.load_plugins()
