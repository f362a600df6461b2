"""`ZooConfig`: everything that defines a zoo, with the study's settings as defaults.

A config is a frozen dataclass so it can be hashed, compared (to reuse a zoo already
on disk) and written to `zoo.json` as a plain dict.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from lmc_jax.errors import LmcError

# Network families: the study's MLP, and convolutional nets for image datasets (whose
# `hidden` is one width multiplier); see nn.models.model_for.
ARCHS = ("mlp", "vgg", "vgg_small", "resnet20")
CONV_NORMS = ("none", "layernorm", "batchnorm")
AUGMENTS = ("none", "crop_flip")
IMAGE_DATASETS = ("mnist", "cifar10")


PRECISIONS = ("fp32", "bf16")  # see nn.precision
MAX_SEED = 2 ** 31 - 1  # seeds become 32-bit keys: larger ones would collide with smaller


@dataclasses.dataclass(frozen=True)
class ZooConfig:
  dataset: str = "moons"
  hidden: tuple = (512,)  # MLP: hidden widths, e.g. (w,) or (w, w, w); conv: (multiplier,)
  arch: str = "mlp"  # one of ARCHS
  norm: str = "none"  # conv nets: one of CONV_NORMS (MLPs use `layernorm`)
  augment: str = "none"  # 'crop_flip': random crop after 4-pixel padding, horizontal flip
  train_subset: int = 0  # train on this many training samples (drawn by data_seed); 0: all
  test_subset: int = 0  # evaluate on this many test samples (drawn by data_seed); 0: all
  layernorm: str = "none"  # 'none' | 'after_relu' | 'before_relu'
  layernorm_eps: float = 1e-6  # Flax's default; torch's nn.LayerNorm uses 1e-5
  init: str = "pytorch"  # see models.INITS
  num_models: int = 50
  epochs: int = 100
  batch_size: int = 256
  optimizer: str = "adamw"  # see optim.OPTIMIZERS
  lr: float = 0.1  # learning rate; for onecycle(_torch) the peak when peak_lr is None
  weight_decay: float = 0.01
  momentum: float = 0.9  # SGD only
  schedule: str = "cosine"  # see optim.SCHEDULES
  peak_lr: Optional[float] = None  # one-cycle peak; None means lr
  cycle_momentum: bool = False  # OneCycleLR's: beta1 / momentum 0.95 -> 0.85 -> 0.95
  seed: int = 0  # model inits and data orders
  data_seed: int = 0  # the dataset itself (Moons generation)
  n_train: int = 512  # Moons only
  n_test: int = 512  # Moons only
  noise: float = 0.1  # Moons only
  precision: str = "fp32"  # 'bf16': matmul inputs in bfloat16, the rest float32 (nn.precision)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["hidden"] = list(self.hidden)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "ZooConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise LmcError(f"zoo.json config has unknown keys {sorted(unknown)}; it was written by "
                     "another version of lmc_jax.")
    d = dict(d)
    if "hidden" in d:
      d["hidden"] = tuple(int(w) for w in d["hidden"])
    return cls(**d)

  def replace(self, **changes) -> "ZooConfig":
    return dataclasses.replace(self, **changes)

  def validate(self) -> "ZooConfig":
    for name in ("lr", "weight_decay", "momentum", "peak_lr", "noise", "layernorm_eps"):
      value = getattr(self, name)
      if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise LmcError(f"--{name} must be a finite number, got {value!r}.")
    if self.weight_decay < 0:
      raise LmcError(f"--weight_decay must be >= 0, got {self.weight_decay}.")
    if not 0 <= self.momentum < 1:
      raise LmcError(f"--momentum must be in [0, 1), got {self.momentum}.")
    if self.peak_lr is not None and self.peak_lr <= 0:
      raise LmcError(f"--peak_lr must be > 0, got {self.peak_lr}.")
    if self.noise < 0:
      raise LmcError(f"--noise must be >= 0, got {self.noise}.")
    for name in ("seed", "data_seed"):
      value = getattr(self, name)
      if not 0 <= value <= MAX_SEED:
        raise LmcError(f"--{name} must be in 0..{MAX_SEED} (larger seeds would wrap onto "
                       f"smaller ones), got {value}.")
    if self.dataset == "moons" and (self.n_train < 1 or self.n_test < 1):
      raise LmcError(f"n_train and n_test must be >= 1, got {self.n_train} and {self.n_test}.")
    if self.num_models < 1:
      raise LmcError(f"num_models must be >= 1, got {self.num_models}.")
    if self.epochs < 0:
      raise LmcError(f"epochs must be >= 0, got {self.epochs}.")
    if self.batch_size < 1:
      raise LmcError(f"batch_size must be >= 1, got {self.batch_size}.")
    if self.arch != "mlp" and self.hidden and min(self.hidden) < 1:
      raise LmcError(f"The width multiplier of --arch={self.arch} must be >= 1, got "
                     f"{list(self.hidden)}; pass e.g. --width=1,2,4.")
    if not self.hidden or min(self.hidden) < 1:
      raise LmcError(f"Every hidden width must be >= 1, got {list(self.hidden)}; "
                     "pass e.g. --width=8.")
    if self.lr <= 0:
      raise LmcError(f"lr must be > 0, got {self.lr}.")
    if self.arch not in ARCHS:
      raise LmcError(f"Unknown --arch {self.arch!r}; use one of {', '.join(ARCHS)}.")
    if self.arch != "mlp":
      if self.dataset not in IMAGE_DATASETS:
        raise LmcError(f"--arch={self.arch} is a convolutional net and {self.dataset} has no "
                       f"images; use --dataset={' or --dataset='.join(IMAGE_DATASETS)}, or "
                       "--arch=mlp.")
      if len(self.hidden) != 1:
        raise LmcError(f"--arch={self.arch} takes one width multiplier per zoo, got "
                       f"{list(self.hidden)}; pass e.g. --width=1,2,4 without --depth.")
    if self.precision not in PRECISIONS:
      raise LmcError(f"Unknown --precision {self.precision!r}; use one of "
                     f"{', '.join(PRECISIONS)}.")
    if self.precision != "fp32" and self.arch != "mlp":
      raise LmcError(f"--precision={self.precision} is built for the MLP; --arch={self.arch} "
                     "trains in fp32, so drop --precision.")
    if self.norm not in CONV_NORMS:
      raise LmcError(f"Unknown --norm {self.norm!r}; use one of {', '.join(CONV_NORMS)}.")
    if self.augment not in AUGMENTS:
      raise LmcError(f"Unknown --augment {self.augment!r}; use one of {', '.join(AUGMENTS)}.")
    if self.augment != "none" and self.dataset not in IMAGE_DATASETS:
      raise LmcError(f"--augment={self.augment} needs an image dataset, not {self.dataset}; "
                     "pass --augment=none.")
    if self.train_subset < 0 or self.test_subset < 0:
      raise LmcError(f"train_subset and test_subset must be >= 0 (0: the whole split), got "
                     f"{self.train_subset} and {self.test_subset}.")
    if not (math.isfinite(self.layernorm_eps) and self.layernorm_eps > 0):
      raise LmcError(f"layernorm_eps must be finite and > 0, got {self.layernorm_eps}; "
                     "pass e.g. --layernorm_eps=1e-5 (PyTorch's).")
    if self.cycle_momentum and self.schedule not in ("onecycle", "onecycle_torch"):
      raise LmcError(f"cycle_momentum needs a one-cycle schedule, got {self.schedule!r}; pass "
                     "--schedule=onecycle_torch (or onecycle) or drop --cycle_momentum.")
    if self.cycle_momentum and self.optimizer == "adagrad":
      raise LmcError("cycle_momentum cycles a momentum that adagrad lacks (torch's OneCycleLR "
                     "refuses it too); drop --cycle_momentum or use adamw, sgd or rmsprop.")
    return self


# The study's settings per dataset (SPEC.md, E1).
DATASET_DEFAULTS = {
    "moons": dict(hidden=(512,), layernorm="none", num_models=50, epochs=100,
                  batch_size=256, optimizer="adamw", lr=0.1, weight_decay=0.01,
                  schedule="cosine"),
    # Linear -> LayerNorm -> ReLU: the order that reproduces the study's Table 3.2 (its
    # published code has Linear -> ReLU -> LayerNorm, which collapses many narrow nets to
    # chance; `--layernorm=after_relu` keeps it). One-cycle from 0.1/25 to a 0.1 peak.
    "mnist": dict(hidden=(512, 512, 512), layernorm="before_relu", num_models=50, epochs=60,
                  batch_size=256, optimizer="adamw", lr=0.01, weight_decay=0.01,
                  schedule="onecycle", peak_lr=0.1),
    "cifar10": dict(hidden=(512, 512, 512), layernorm="before_relu", num_models=10, epochs=60,
                    batch_size=256, optimizer="adamw", schedule="onecycle"),
}

# Settings that follow from the optimizer, per dataset: the study's E8 (CIFAR-10, all
# one-cycle; PyTorch's OneCycleLR ignores the base lr, the peak is what matters).
OPTIMIZER_DEFAULTS = {
    "cifar10": {
        "adamw": dict(lr=1e-3, weight_decay=0.1, peak_lr=1e-2),
        "sgd": dict(lr=1e-4, momentum=0.9, weight_decay=1e-2, peak_lr=1e-2),
        "rmsprop": dict(lr=1e-5, weight_decay=0.0, peak_lr=1e-5),
        "adagrad": dict(lr=1e-2, weight_decay=1e-2, peak_lr=1e-2),
    },
}


def default_config(dataset: str = "moons", **overrides) -> ZooConfig:
  """The study's config for `dataset`, with `overrides` applied and checked."""
  if dataset not in DATASET_DEFAULTS:
    raise LmcError(f"Unknown dataset {dataset!r}; use one of {', '.join(DATASET_DEFAULTS)}.")
  fields = dict(DATASET_DEFAULTS[dataset], dataset=dataset)
  optimizer = overrides.get("optimizer") or fields.get("optimizer", "adamw")
  fields.update(OPTIMIZER_DEFAULTS.get(dataset, {}).get(optimizer, {}))
  fields.update({k: v for k, v in overrides.items() if v is not None})
  if fields.get("arch", "mlp") != "mlp":
    # Conv nets: BatchNorm as in the published VGG and ResNet-20; CIFAR-10's standard
    # augmentation (flipping digits would change them, so MNIST has none).
    if overrides.get("norm") is None:
      fields["norm"] = "batchnorm"
    if overrides.get("augment") is None:
      fields["augment"] = "crop_flip" if dataset == "cifar10" else "none"
  if "hidden" in fields:
    fields["hidden"] = tuple(int(w) for w in fields["hidden"])
  return ZooConfig(**fields).validate()
