"""`ZooConfig`: everything that defines a zoo, with the study's settings as defaults.

A config is a frozen dataclass so it can be hashed, compared (to reuse a zoo already
on disk) and written to `zoo.json` as a plain dict.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from lmc_jax.errors import LmcError


@dataclasses.dataclass(frozen=True)
class ZooConfig:
  dataset: str = "moons"
  hidden: tuple = (512,)  # hidden widths, e.g. (w,) or (w, w, w)
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
    if self.num_models < 1:
      raise LmcError(f"num_models must be >= 1, got {self.num_models}.")
    if self.epochs < 0:
      raise LmcError(f"epochs must be >= 0, got {self.epochs}.")
    if self.batch_size < 1:
      raise LmcError(f"batch_size must be >= 1, got {self.batch_size}.")
    if not self.hidden or min(self.hidden) < 1:
      raise LmcError(f"Every hidden width must be >= 1, got {list(self.hidden)}; "
                     "pass e.g. --width=8.")
    if self.lr <= 0:
      raise LmcError(f"lr must be > 0, got {self.lr}.")
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
  if "hidden" in fields:
    fields["hidden"] = tuple(int(w) for w in fields["hidden"])
  return ZooConfig(**fields).validate()
