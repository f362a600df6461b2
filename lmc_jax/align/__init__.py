"""Alignment: the registry of alignment methods and the methods themselves.

Importing the package registers every built-in method (each module registers its own).
Methods of installed plug-ins (entry-point group `lmc_jax.align_methods`, and modules named
in LMC_JAX_ALIGN_PLUGINS) are imported when a method is first looked up, so that entry
points which never align (`experiments.fetch`, `--help` of the others) scan nothing.
"""
import sys

# isort: off
# The order of import is the order of registration, which `--help` lists the methods in.
from lmc_jax.align import registry  # noqa: F401
from lmc_jax.align import weight  # noqa: F401
from lmc_jax.align import activation  # noqa: F401
from lmc_jax.align import ste  # noqa: F401
from lmc_jax.align import sinkhorn  # noqa: F401
from lmc_jax.align import merge_many  # noqa: F401
from lmc_jax.align import exact  # noqa: F401
from lmc_jax.align import orthogonal_matching  # noqa: F401
from lmc_jax.align import orthogonal_activation  # noqa: F401
# isort: on
from lmc_jax.symmetry import axis_trace, derive, spec, units

# Permutation specs lived here before they moved to `lmc_jax.symmetry`; code written then
# still imports them from here (`from lmc_jax.align.spec import perm_sizes`).
for _name, _module in (("spec", spec), ("derive", derive), ("axis_trace", axis_trace),
                       ("units", units)):
  sys.modules[f"{__name__}.{_name}"] = _module
