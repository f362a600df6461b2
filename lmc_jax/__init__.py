"""lmc_jax: train zoos of networks at once, align them by permutation, and measure linear
mode connectivity along every line between them.

The names a researcher uses are here; the sub-packages, in dependency order, hold the rest:
`data`, `nn`, `zoo`, `lmc`, `align`, `analysis`, `report`.
"""

__version__ = "0.1.0"

from lmc_jax.align.derive import check_spec, derive_spec, spec_without_prefix
from lmc_jax.align.registry import MethodSettings, align_by, method_names, register
from lmc_jax.align.spec import (
                                PermutationSpec,
                                apply_permutation,
                                mlp_permutation_spec,
                                permutation_spec_from_axes,
                                spec_for_config,
)
from lmc_jax.align.weight import align_zoo, weight_matching
from lmc_jax.config import ZooConfig, default_config
from lmc_jax.data.datasets import Dataset, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import Curves, all_pairs, pair_sweep
from lmc_jax.lmc.measures import epsilon, loss_barrier, rebasin_barrier
from lmc_jax.nn.models import model_for
from lmc_jax.zoo.io import load_zoo, load_zoo_checked, save_zoo
from lmc_jax.zoo.training import Zoo, train_zoo

__all__ = [
    "__version__",
    # configs and data
    "ZooConfig", "default_config", "Dataset", "load_dataset",
    # zoos
    "model_for", "train_zoo", "Zoo", "save_zoo", "load_zoo", "load_zoo_checked",
    # alignment
    "PermutationSpec", "derive_spec", "check_spec", "spec_without_prefix",
    "permutation_spec_from_axes", "mlp_permutation_spec", "spec_for_config",
    "apply_permutation", "weight_matching", "align_zoo", "align_by", "method_names", "register",
    "MethodSettings",
    # linear mode connectivity
    "all_pairs", "pair_sweep", "Curves", "epsilon", "loss_barrier", "rebasin_barrier",
    "LmcError",
]
