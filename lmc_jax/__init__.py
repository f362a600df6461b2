"""lmc_jax: train zoos of networks at once, align them by permutation, and measure linear
mode connectivity along every line between them.

The names a researcher uses are here; the sub-packages, in dependency order, hold the rest:
`data`, `nn`, `symmetry`, `zoo`, `lmc`, `align`, `analysis`, `report`.
"""

import importlib

from lmc_jax.version import __version__

# Every public name, by the module it lives in, in dependency order: imported on first use
# (PEP 562), so that `import lmc_jax.cli.zoo` (or any one module) loads only what that
# module needs, not scipy and matplotlib for every command.
_MODULES = {
    # configs and data
    "lmc_jax.config": ("ZooConfig", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig",
                       "RunOptions", "ConfigError", "default_config"),
    "lmc_jax.data.datasets": ("Dataset", "DatasetInfo", "dataset_info", "load_dataset"),
    # how code runs
    "lmc_jax.execution": ("ExecutionPlan", "plan_from_environment"),
    # zoos
    "lmc_jax.nn.architectures": ("model_for",),
    "lmc_jax.zoo.training": ("train_zoo", "Zoo"),
    "lmc_jax.zoo.io": ("save_zoo", "load_zoo", "read_zoo_json"),
    "lmc_jax.zoo.handle": ("open_zoo", "ZooHandle"),
    # alignment
    "lmc_jax.symmetry.spec": ("PermutationSpec", "permutation_spec_from_axes",
                              "mlp_permutation_spec", "validate_spec", "apply_permutation",
                              "invert_permutation", "perm_sizes", "random_permutation"),
    "lmc_jax.symmetry.derive": ("derive_spec", "check_spec", "spec_without_prefix",
                                "spec_for_config"),
    "lmc_jax.align.weight": ("weight_matching", "align_zoo"),
    "lmc_jax.align.activation": ("activation_matching",),
    "lmc_jax.align.merge_many": ("merge_many",),
    "lmc_jax.align.registry": ("align_by", "AlignTask", "method_names", "register",
                               "MethodSettings"),
    # linear mode connectivity
    "lmc_jax.lmc.interpolation": ("all_pairs", "pair_sweep", "Curves"),
    "lmc_jax.lmc.batchnorm": ("reset_pair_sweep",),
    "lmc_jax.lmc.repair": ("repaired_pair_sweep",),
    "lmc_jax.symmetry.units": ("repair_sites",),
    "lmc_jax.lmc.measures": ("epsilon", "loss_barrier", "rebasin_barrier", "curve_set"),
    "lmc_jax.analysis.barrier": ("analyse_zoo", "read_barrier_json"),
    # merging
    "lmc_jax.merging.combine": ("merge", "merge_models", "Merged", "merge_method_names"),
    "lmc_jax.merging.evaluate": ("predict_logits", "scores", "Scores", "joint_loss_acc",
                                 "part_accuracy", "ensemble_logits"),
    # result files, as records
    "lmc_jax.records": ("ZooRecord", "ModelMetrics", "CurveSet"),
    "lmc_jax.barrier_records": ("BarrierResult", "MethodEntry", "RepairEntry", "Diagnostics"),
    "lmc_jax.errors": ("LmcError",),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
  """A public name, imported from its module on first use."""
  if name not in _EXPORTS:
    raise AttributeError(f"module 'lmc_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # the next use is a plain lookup
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
