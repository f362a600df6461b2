"""A zoo's config in four sections, each handed only to the layer that uses it.

- `DataConfig` (the `data` layer): which dataset, its generation and subsets;
- `ModelConfig` (`nn`): the network;
- `OptimConfig` (`nn.optim`): the optimizer and its schedule;
- `TrainConfig` (`zoo`): how many models, how long, batches, augmentation, the seed.

`ZooConfig` holds one of each. Every section is a frozen dataclass, so a config can be
hashed, compared (to reuse a zoo already on disk) and written to `zoo.json` as a dict of
sections. Each field says in its metadata what it means, its bounds and choices; a bad
value is refused by `ConfigError`, which names the field (`optim.lr`); the entry points
turn the field into its flag (`--lr`) in one place (`cli.config_flags`).

The values that are not a field's own default (the study's settings per dataset, and the
defaults an architecture asks for) are applied by `default_config`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional, Tuple

from lmc_jax.errors import LmcError
from lmc_jax.split_spec import SplitError, parse_split

# Choices of the fields that take one of a few names. What each means lives with the code
# that uses it (nn.models, nn.conv, nn.optim, nn.precision, data.augment).
NORMS = ("none", "layernorm", "batchnorm")
LAYERNORM_POSITIONS = ("none", "after_relu", "before_relu")
ACTIVATIONS = ("relu", "tanh", "gelu")
INITS = ("default", "pytorch", "kaiming_normal", "kaiming_uniform", "kaiming_normal_torch_bias",
         "kaiming_uniform_torch_bias")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "onecycle", "onecycle_torch")
ONECYCLE_SCHEDULES = ("onecycle", "onecycle_torch")
AUGMENTS = ("none", "crop_flip")
POOLS = ("mean", "cls")
MAX_SEED = 2 ** 31 - 1
SEED_BOUND = "seeds become 32-bit keys: larger ones would wrap onto smaller ones"
DEFAULT_ARCH = "mlp"  # the study's network (nn.architectures holds what each name builds)


class ConfigError(LmcError):
  """A config value out of its bounds: `field` is its dotted name (`model.hidden`) and
  `problem` what is wrong with it ("must be > 0, got -1"). The message reads
  `<field> <problem>.`; `worded_for(name)` gives it for another name of the field (a flag)."""

  def __init__(self, field: str, problem: str):
    self.field, self.problem = field, problem
    super().__init__(f"{field} {problem}.")

  def worded_for(self, name: str) -> LmcError:
    return LmcError(f"{name} {self.problem}.")


def _field(default, help: str, *, low=None, high=None, below=None, above=None,
           choices: Optional[Tuple[str, ...]] = None, flag: Optional[str] = None,
           why: str = ""):
  """A config field: its default, what it means (the flag's help), and its bounds: `low`
  and `high` inclusive, `above` and `below` exclusive, or one of `choices`; `why` says why
  the bounds are what they are. `flag` names its flag where that is not the field's own
  name."""
  meta = dict(help=help, low=low, high=high, below=below, above=above, choices=choices,
              flag=flag, why=why)
  return dataclasses.field(default=default, metadata=meta)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


class Section:
  """What every section shares: checking each field against its metadata, and turning it
  into and back from a JSON dict."""
  NAME = ""

  def _check_field(self, f: dataclasses.Field) -> None:
    value, meta, name = getattr(self, f.name), f.metadata, f"{self.NAME}.{f.name}"
    default = f.default
    if isinstance(default, bool):
      if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got {value!r}")
      return
    if isinstance(default, str):
      if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {value!r}")
    elif isinstance(default, int):
      if not _is_int(value):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    elif isinstance(default, float) or default is None:
      if value is None and default is None:
        return
      if not (_is_number(value) and math.isfinite(value)):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
      raise ConfigError(name, f"must be one of {', '.join(meta['choices'])}, got {value!r}")
    for key, ok, word in (("low", lambda v, b: v >= b, ">="), ("high", lambda v, b: v <= b, "<="),
                          ("above", lambda v, b: v > b, ">"), ("below", lambda v, b: v < b, "<")):
      bound = meta.get(key)
      if bound is not None and not ok(value, bound):
        why = f" ({meta['why']})" if meta.get("why") else ""
        raise ConfigError(name, f"must be {word} {bound}, got {value!r}{why}")

  def validate(self):
    """The section itself, or a `ConfigError` naming the first field out of bounds."""
    for f in dataclasses.fields(self):
      self._check_field(f)
    self._check()
    return self

  def _check(self) -> None:
    """Checks between the section's fields (none by default)."""

  def to_dict(self) -> dict:
    return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)}

  @classmethod
  def from_dict(cls, d: dict):
    """The section of a JSON dict; unknown keys are refused (another lmc_jax wrote them)."""
    if not isinstance(d, dict):
      raise ConfigError(cls.NAME, f"must be a JSON object, got {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ConfigError(cls.NAME, f"has unknown keys {unknown} (written by another version of "
                        "lmc_jax?)")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
  NAME = "data"
  dataset: str = _field("moons", "Dataset: moons or modular_addition (generated, no "
                        "download), mnist, cifar10 (installed with experiments.fetch), npz:PATH, "
                        "one .npz holding x_train, y_train, x_test, y_test, or tfds:NAME, an "
                        "image-classification dataset prepared with tensorflow-datasets under "
                        "--data_dir (nothing is downloaded).")
  data_seed: int = _field(0, "Seed of the generated dataset (Moons) and of the subsets.",
                          low=0, high=MAX_SEED, why=SEED_BOUND)
  n_train: int = _field(512, "Moons training samples.", low=2)
  n_test: int = _field(512, "Moons test samples.", low=2)
  noise: float = _field(0.1, "Moons noise standard deviation.", low=0)
  modulus: int = _field(97, "Modulus p of modular_addition (a + b mod p; p + 1 tokens, p "
                        "classes).", low=2, why="a sum modulo 1 has one answer")
  train_fraction: float = _field(0.3, "Fraction of modular_addition's p * p sums it trains on "
                                 "(drawn by --data_seed; the rest are its test set).", above=0,
                                 below=1)
  train_subset: int = _field(0, "Train on this many training samples, drawn by --data_seed "
                             "(0: all): for reduced runs on a CPU.", low=0)
  test_subset: int = _field(0, "Evaluate on this many test samples, drawn by --data_seed "
                            "(0: all).", low=0)
  train_split: str = _field("", "Train on one part of the training set (after "
                            "--train_subset; the test split stays whole): shard:K/N (the K-th "
                            "of N class-balanced shards), classes:A-B or classes:I,J,... (those "
                            "labels), skew:P:K/N (N shards, shard K holding a fraction P of its "
                            "own block of labels and a share of the rest), dirichlet:ALPHA:K/N "
                            "(per-class proportions from a Dirichlet(ALPHA)); drawn by "
                            "--data_seed. Empty: the whole set.")

  def _check(self) -> None:
    dataset_defaults(self.dataset)  # a known name, or npz:PATH
    if self.train_split:
      try:
        parse_split(self.train_split)
      except SplitError as e:
        raise ConfigError("data.train_split", str(e)) from None


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
  NAME = "model"
  arch: str = _field(DEFAULT_ARCH, "Network: a built-in architecture, or package.module:Name "
                     "(importable from PYTHONPATH), any Flax module class or factory called "
                     "with width= and num_classes=.")
  hidden: tuple = _field((512,), "Hidden widths of the MLP, e.g. (w,) or (w, w, w); for every "
                         "other network one width (multiplier), (w,).", flag="width")
  norm: str = _field("none", "Norm of the conv nets after each conv (they ask for batchnorm; "
                      "the sweeps then reset its statistics).", choices=NORMS)
  layernorm: str = _field("none", "LayerNorm on each hidden layer of the MLP: before_relu is "
                          "Linear -> LayerNorm -> ReLU, the order that reproduces the study's "
                          "MNIST table; after_relu is its published code's order, which "
                          "collapses many narrow nets.", choices=LAYERNORM_POSITIONS)
  activation: str = _field("relu", "Activation of the MLP's hidden layers: relu (the study's), "
                           "tanh (odd: each hidden unit may also flip its sign, which "
                           "alignment then searches) or gelu. LayerNorm's positions keep their "
                           "names (before_relu: before the activation).", choices=ACTIVATIONS)
  layernorm_eps: float = _field(1e-6, "Epsilon of every LayerNorm of the MLP (Flax's 1e-6; "
                                "PyTorch's nn.LayerNorm uses 1e-5).", above=0)
  init: str = _field("pytorch", "Weight init of the built-in networks: pytorch "
                     "(torch.nn.Linear's default, what the study used), default (Flax's), "
                     "kaiming_normal, kaiming_uniform (He, ReLU gain, zero bias), "
                     "kaiming_normal_torch_bias, kaiming_uniform_torch_bias (the study's "
                     "section-5.2 code: torch's kaiming_normal_/kaiming_uniform_ on the weight, "
                     "torch.nn.Linear's default bias).", choices=INITS)
  blocks: int = _field(1, "Transformer blocks of vit and transformer (their --depth).", low=1,
                       flag="depth")
  heads: int = _field(2, "Attention heads of vit and transformer; they must divide the "
                      "embedding width (32 x --width).", low=1)
  patch: int = _field(7, "Side of the square patches of vit (dividing the image's height and "
                      "width).", low=1)
  pool: str = _field("mean", "What vit's readout reads: mean (of the patch tokens) or cls (a "
                     "learned class token).", choices=POOLS)
  precision: str = _field("fp32", "Matmuls: fp32, or bf16 (bfloat16 inputs; params, optimizer "
                          "state, LayerNorm, the loss and every accumulation in float32; the "
                          "MLP only). Part of the zoo's config.", choices=PRECISIONS)

  def _check(self) -> None:
    if not (isinstance(self.hidden, tuple) and self.hidden
            and all(_is_int(w) for w in self.hidden)):
      shown = list(self.hidden) if isinstance(self.hidden, tuple) else self.hidden
      raise ConfigError("model.hidden", f"must be one or more integer widths, got {shown!r}")
    if min(self.hidden) < 1:
      raise ConfigError("model.hidden", f"holds a width below 1 ({list(self.hidden)}); every "
                        "width must be >= 1")
    if not self.arch.strip():
      raise ConfigError("model.arch", "is empty; name a built-in architecture or "
                        "package.module:Name")


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
  NAME = "optim"
  optimizer: str = _field("adamw", "Optimizer, PyTorch semantics. On cifar10 it also selects "
                          "the study's E8 settings for that optimizer.", choices=OPTIMIZERS)
  lr: float = _field(0.1, "Learning rate; for onecycle(_torch) the schedule's peak unless "
                     "--peak_lr is given.", above=0)
  peak_lr: Optional[float] = _field(None, "Peak learning rate of the onecycle schedule "
                                    "(default: --lr).", above=0)
  weight_decay: float = _field(0.01, "Weight decay: decoupled for adamw, L2 otherwise.", low=0)
  momentum: float = _field(0.9, "SGD momentum.", low=0, below=1)
  schedule: str = _field("cosine", "Learning-rate schedule over all steps. onecycle is optax's "
                         "one-cycle; onecycle_torch is torch's OneCycleLR rule exactly (same "
                         "values, peak and end one step earlier: about 2e-4 of the peak apart "
                         "at most over 60 x 235 steps).", choices=SCHEDULES)
  cycle_momentum: bool = _field(False, "With a one-cycle schedule, also cycle adamw's beta1 "
                                "(sgd's, rmsprop's momentum) 0.95 -> 0.85 at the peak -> 0.95 at "
                                "the end, as torch's OneCycleLR does by default; on sgd it "
                                "replaces --momentum and on rmsprop it switches torch's momentum "
                                "buffer on. Not for adagrad. The momentum follows torch's phase "
                                "boundaries: with --schedule=onecycle_torch both match torch "
                                "(off: a constant beta1 0.9 / --momentum).")

  def _check(self) -> None:
    if self.cycle_momentum and self.schedule not in ONECYCLE_SCHEDULES:
      raise ConfigError("optim.cycle_momentum", f"needs a one-cycle schedule, not "
                        f"{self.schedule!r} (use onecycle_torch or onecycle, or leave "
                        "cycle_momentum off)")
    if self.cycle_momentum and self.optimizer == "adagrad":
      raise ConfigError("optim.cycle_momentum", "cycles a momentum that adagrad lacks (torch's "
                        "OneCycleLR refuses it too); use adamw, sgd or rmsprop, or leave "
                        "cycle_momentum off")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
  NAME = "train"
  num_models: int = _field(50, "Models per zoo.", low=1)
  epochs: int = _field(100, "Training epochs.", low=1, why="a zoo with no epoch has no training "
                       "history to record")
  batch_size: int = _field(256, "Mini-batch size.", low=1)
  augment: str = _field("none", "Training augmentation of image datasets: crop_flip (random "
                        "crop after 4-pixel padding, horizontal flip) or none.", choices=AUGMENTS)
  seed: int = _field(0, "Seed of model inits and data orders; same seed, same zoo.", low=0,
                     high=MAX_SEED, why=SEED_BOUND)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}
# Field name -> its section's name (every field name is unique across sections).
SECTION_OF = {f.name: s for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class ZooConfig:
  """Everything that defines a zoo: four sections (see the module docstring)."""
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  train: TrainConfig = TrainConfig()

  def to_dict(self) -> dict:
    """`{"data": {...}, "model": {...}, "optim": {...}, "train": {...}}`, JSON-ready."""
    return {name: getattr(self, name).to_dict() for name in SECTIONS}

  @classmethod
  def from_dict(cls, d: dict) -> "ZooConfig":
    """The config of a zoo.json: its sections, or the one flat dict earlier versions wrote
    (each field goes to its section)."""
    if not isinstance(d, dict):
      raise ConfigError("config", f"must be a JSON object, got {d!r}")
    if set(d) & set(SECTIONS) or not d:
      unknown = sorted(set(d) - set(SECTIONS))
      if unknown:
        raise ConfigError("config", f"has unknown sections {unknown} (written by another "
                          "version of lmc_jax?)")
      return cls(**{name: SECTIONS[name].from_dict(d.get(name, {})) for name in SECTIONS})
    unknown = sorted(set(d) - set(SECTION_OF))
    if unknown:
      raise ConfigError("config", f"has unknown keys {unknown} (written by another version of "
                        "lmc_jax?)")
    return cls().replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

  def replace(self, **changes) -> "ZooConfig":
    """A copy with whole sections (`model=ModelConfig(...)`) or single fields by name
    (`num_models=3`: every field name belongs to one section) replaced."""
    sections = {name: getattr(self, name) for name in SECTIONS}
    fields: Dict[str, dict] = {}
    for key, value in changes.items():
      if key in SECTIONS:
        sections[key] = value
      elif key in SECTION_OF:
        fields.setdefault(SECTION_OF[key], {})[key] = value
      else:
        raise LmcError(f"ZooConfig has no field {key!r}; its fields are "
                       f"{', '.join(sorted(SECTION_OF))}.")
    for name, values in fields.items():
      sections[name] = dataclasses.replace(sections[name], **values)
    return dataclasses.replace(self, **sections)

  def validate(self) -> "ZooConfig":
    """The config itself, or a `ConfigError` naming the first field out of bounds. What
    depends on the architecture or the dataset's files (a conv net needs images) is checked
    where the network is built and the dataset read."""
    for name in SECTIONS:
      getattr(self, name).validate()
    return self


def field_default(name: str):
  """The own default of the config field `name` (any section's)."""
  cls = SECTIONS[SECTION_OF[name]]
  return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclasses.dataclass(frozen=True)
class RunOptions(Section):
  """How one training run goes, beside what it trains: where data is read, whether a zoo
  already there is replaced, checkpoints, and evaluations during training. Not part of the
  zoo's config: two runs with other options train the same zoo."""
  NAME = "run"
  data_dir: str = _field("data", "Where downloaded datasets live (see experiments.fetch).")
  overwrite: bool = _field(False, "Retrain and replace a zoo that already exists, whatever "
                           "state it is in; the new zoo is built beside it and swapped in "
                           "whole.")
  resume: bool = _field(True, "Continue an interrupted run from its last checkpoint "
                        "(checkpoint.npz in the zoo directory); the result is the zoo an "
                        "uninterrupted run writes. --noresume starts again from epoch 0.")
  checkpoint_every: int = _field(0, "Also checkpoint every this many epochs (0: by time only, "
                                 "see --checkpoint_minutes).", low=0)
  checkpoint_minutes: float = _field(10.0, "Checkpoint the training state at most every this "
                                     "many minutes (0: never by time).", low=0)
  eval_every: int = _field(0, "Also record every model's test loss and accuracy every this "
                           "many epochs (and after the last) in history.npz; 0: train loss "
                           "only.", low=0)


# The study's settings per dataset (SPEC.md, E1), as field name -> value.
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
    # a + b mod p read by a small transformer (the grokking setting: AdamW, strong decay).
    "modular_addition": dict(arch="transformer", hidden=(1,), num_models=8, epochs=200,
                             batch_size=512, optimizer="adamw", lr=1e-3, weight_decay=1.0,
                             schedule="constant"),
}
# A dataset of the user's own (`npz:PATH`): one hidden layer, AdamW with a cosine schedule.
NPZ_PREFIX = "npz:"
TFDS_PREFIX = "tfds:"  # an image-classification dataset prepared with TFDS: the same defaults
OWN_DATA_DEFAULTS = dict(hidden=(512,), layernorm="none", num_models=10, epochs=20,
                         batch_size=256, optimizer="adamw", lr=1e-3, weight_decay=0.01,
                         schedule="cosine")

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

# Defaults an architecture asks for, registered by the module that builds it (nn's
# architectures register theirs when lmc_jax is imported): arch name -> f(dataset) ->
# {field: value}, applied by `default_config` under the user's own overrides.
_ARCH_DEFAULTS: Dict[str, Callable[[str], Dict[str, Any]]] = {}


def register_arch_defaults(arch: str, defaults: Callable[[str], Dict[str, Any]]) -> None:
  _ARCH_DEFAULTS[arch] = defaults


def dataset_defaults(dataset: str) -> dict:
  """The study's settings for `dataset` (field name -> value), or those for a dataset of
  the user's own; an unknown name is refused."""
  if dataset in DATASET_DEFAULTS:
    return dict(DATASET_DEFAULTS[dataset])
  for prefix in (NPZ_PREFIX, TFDS_PREFIX):
    if dataset.startswith(prefix) and len(dataset) > len(prefix):
      return dict(OWN_DATA_DEFAULTS)
  raise ConfigError("data.dataset", f"must be one of {', '.join(DATASET_DEFAULTS)}, "
                    f"npz:PATH or tfds:NAME, got {dataset!r}")


def default_config(dataset: str = "moons", **overrides) -> ZooConfig:
  """The study's config for `dataset`, with `overrides` (field name -> value; None leaves
  the default) applied and checked."""
  fields = dict(dataset_defaults(dataset), dataset=dataset)
  given = {k: v for k, v in overrides.items() if v is not None}
  optimizer = given.get("optimizer", fields.get("optimizer", "adamw"))
  fields.update(OPTIMIZER_DEFAULTS.get(dataset, {}).get(optimizer, {}))
  arch = given.get("arch", fields.get("arch", DEFAULT_ARCH))
  if arch in _ARCH_DEFAULTS:
    fields.update(_ARCH_DEFAULTS[arch](dataset))
  fields.update(given)
  if "hidden" in fields and isinstance(fields["hidden"], (list, tuple)):
    fields["hidden"] = tuple(fields["hidden"])
  return ZooConfig().replace(**fields).validate()
