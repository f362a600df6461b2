"""lmc_jax: train zoos of networks at once, align them by permutation, and measure linear
mode connectivity along every line between them.

The names a researcher uses are here; the sub-packages, in dependency order, hold the rest:
`data`, `nn`, `symmetry`, `zoo`, `lmc`, `align`, `analysis`, `report`.
"""

import importlib

from lmc_jax.version import __version__

# Each public name and the module it lives in: imported on first use (PEP 562), so that
# `import lmc_jax.cli.zoo` (or any one module) loads only what that module needs, not
# scipy and matplotlib for every command.
_EXPORTS = {
    "activation_matching": "lmc_jax.align.activation",
    "merge_many": "lmc_jax.align.merge_many",
    "AlignTask": "lmc_jax.align.registry", "MethodSettings": "lmc_jax.align.registry",
    "align_by": "lmc_jax.align.registry", "method_names": "lmc_jax.align.registry",
    "register": "lmc_jax.align.registry",
    "align_zoo": "lmc_jax.align.weight", "weight_matching": "lmc_jax.align.weight",
    "analyse_zoo": "lmc_jax.analysis.barrier", "read_barrier_json": "lmc_jax.analysis.barrier",
    "BarrierResult": "lmc_jax.barrier_records", "Diagnostics": "lmc_jax.barrier_records",
    "MethodEntry": "lmc_jax.barrier_records", "RepairEntry": "lmc_jax.barrier_records",
    "ConfigError": "lmc_jax.config", "DataConfig": "lmc_jax.config",
    "ModelConfig": "lmc_jax.config", "OptimConfig": "lmc_jax.config",
    "RunOptions": "lmc_jax.config", "TrainConfig": "lmc_jax.config", "ZooConfig": "lmc_jax.config",
    "default_config": "lmc_jax.config",
    "Dataset": "lmc_jax.data.datasets", "DatasetInfo": "lmc_jax.data.datasets",
    "dataset_info": "lmc_jax.data.datasets", "load_dataset": "lmc_jax.data.datasets",
    "LmcError": "lmc_jax.errors",
    "ExecutionPlan": "lmc_jax.execution", "plan_from_environment": "lmc_jax.execution",
    "reset_pair_sweep": "lmc_jax.lmc.batchnorm",
    "Curves": "lmc_jax.lmc.interpolation", "all_pairs": "lmc_jax.lmc.interpolation",
    "pair_sweep": "lmc_jax.lmc.interpolation",
    "curve_set": "lmc_jax.lmc.measures", "epsilon": "lmc_jax.lmc.measures",
    "loss_barrier": "lmc_jax.lmc.measures", "rebasin_barrier": "lmc_jax.lmc.measures",
    "repaired_pair_sweep": "lmc_jax.lmc.repair",
    "Merged": "lmc_jax.merging.combine", "merge": "lmc_jax.merging.combine",
    "merge_method_names": "lmc_jax.merging.combine", "merge_models": "lmc_jax.merging.combine",
    "Scores": "lmc_jax.merging.evaluate", "ensemble_logits": "lmc_jax.merging.evaluate",
    "joint_loss_acc": "lmc_jax.merging.evaluate", "part_accuracy": "lmc_jax.merging.evaluate",
    "predict_logits": "lmc_jax.merging.evaluate", "scores": "lmc_jax.merging.evaluate",
    "model_for": "lmc_jax.nn.architectures",
    "CurveSet": "lmc_jax.records", "ModelMetrics": "lmc_jax.records",
    "ZooRecord": "lmc_jax.records",
    "check_spec": "lmc_jax.symmetry.derive", "derive_spec": "lmc_jax.symmetry.derive",
    "spec_for_config": "lmc_jax.symmetry.derive", "spec_without_prefix": "lmc_jax.symmetry.derive",
    "PermutationSpec": "lmc_jax.symmetry.spec", "apply_permutation": "lmc_jax.symmetry.spec",
    "invert_permutation": "lmc_jax.symmetry.spec", "mlp_permutation_spec": "lmc_jax.symmetry.spec",
    "perm_sizes": "lmc_jax.symmetry.spec", "permutation_spec_from_axes": "lmc_jax.symmetry.spec",
    "random_permutation": "lmc_jax.symmetry.spec", "validate_spec": "lmc_jax.symmetry.spec",
    "repair_sites": "lmc_jax.symmetry.units",
    "ZooHandle": "lmc_jax.zoo.handle", "open_zoo": "lmc_jax.zoo.handle",
    "load_zoo": "lmc_jax.zoo.io", "read_zoo_json": "lmc_jax.zoo.io", "save_zoo": "lmc_jax.zoo.io",
    "Zoo": "lmc_jax.zoo.training", "train_zoo": "lmc_jax.zoo.training",
}

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


def __getattr__(name):
  """A public name, imported from its module on first use."""
  if name not in _EXPORTS:
    raise AttributeError(f"module 'lmc_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # the next use is a plain lookup
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
