"""lmc_jax: train zoos of networks at once, align them by permutation, and measure linear
mode connectivity along every line between them.

The names a researcher uses are here; the sub-packages, in dependency order, hold the rest:
`data`, `nn`, `symmetry`, `zoo`, `lmc`, `align`, `analysis`, `report`.
"""

from lmc_jax.align.activation import activation_matching
from lmc_jax.align.merge_many import merge_many
from lmc_jax.align.registry import AlignTask, MethodSettings, align_by, method_names, register
from lmc_jax.align.weight import align_zoo, weight_matching
from lmc_jax.analysis.barrier import analyse_zoo, read_barrier_json
from lmc_jax.barrier_records import BarrierResult, Diagnostics, MethodEntry, RepairEntry
from lmc_jax.config import (
                            ConfigError,
                            DataConfig,
                            ModelConfig,
                            OptimConfig,
                            RunOptions,
                            TrainConfig,
                            ZooConfig,
                            default_config,
)
from lmc_jax.data.datasets import Dataset, DatasetInfo, dataset_info, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_from_environment
from lmc_jax.lmc.batchnorm import reset_pair_sweep
from lmc_jax.lmc.interpolation import Curves, all_pairs, pair_sweep
from lmc_jax.lmc.measures import curve_set, epsilon, loss_barrier, rebasin_barrier
from lmc_jax.lmc.repair import repaired_pair_sweep
from lmc_jax.merging.combine import Merged, merge, merge_method_names, merge_models
from lmc_jax.merging.evaluate import (
                                   Scores,
                                   ensemble_logits,
                                   joint_loss_acc,
                                   part_accuracy,
                                   predict_logits,
                                   scores,
)
from lmc_jax.nn.architectures import model_for
from lmc_jax.records import CurveSet, ModelMetrics, ZooRecord
from lmc_jax.symmetry.derive import check_spec, derive_spec, spec_for_config, spec_without_prefix
from lmc_jax.symmetry.spec import (
                                PermutationSpec,
                                apply_permutation,
                                invert_permutation,
                                mlp_permutation_spec,
                                perm_sizes,
                                permutation_spec_from_axes,
                                random_permutation,
                                validate_spec,
)
from lmc_jax.symmetry.units import repair_sites
from lmc_jax.version import __version__
from lmc_jax.zoo.handle import ZooHandle, open_zoo
from lmc_jax.zoo.io import load_zoo, read_zoo_json, save_zoo
from lmc_jax.zoo.training import Zoo, train_zoo

__all__ = [
    "__version__",
    # configs and data
    "ZooConfig", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "RunOptions",
    "ConfigError", "default_config", "Dataset", "DatasetInfo", "dataset_info", "load_dataset",
    # how code runs
    "ExecutionPlan", "plan_from_environment",
    # zoos
    "model_for", "train_zoo", "Zoo", "save_zoo", "load_zoo", "open_zoo", "ZooHandle",
    # alignment
    "PermutationSpec", "derive_spec", "check_spec", "spec_without_prefix",
    "permutation_spec_from_axes", "mlp_permutation_spec", "spec_for_config",
    "validate_spec", "apply_permutation", "invert_permutation", "perm_sizes",
    "random_permutation", "weight_matching", "align_zoo", "activation_matching", "merge_many",
    "align_by", "AlignTask", "method_names", "register", "MethodSettings",
    # linear mode connectivity
    "all_pairs", "pair_sweep", "reset_pair_sweep", "repaired_pair_sweep", "repair_sites",
    "Curves", "epsilon", "loss_barrier", "rebasin_barrier", "analyse_zoo",
    # merging
    "merge", "merge_models", "Merged", "merge_method_names", "predict_logits", "scores",
    "Scores", "joint_loss_acc", "part_accuracy", "ensemble_logits",
    # result files, as records
    "ZooRecord", "ModelMetrics", "CurveSet", "curve_set", "BarrierResult", "MethodEntry",
    "RepairEntry", "Diagnostics", "read_zoo_json", "read_barrier_json",
    "LmcError",
]
