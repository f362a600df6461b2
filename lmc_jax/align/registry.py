"""The registry of alignment methods: `align_by(name, ...)` puts a zoo in one frame.

A method is one module that calls `register`: its name, a line of help, the settings it
reads (shared ones such as `seed` and `max_iter`, and its own, declared with it) and a
function `align(task) -> Alignment`. Everything else follows from the registry: the names
`--align` accepts, the `MethodSettings` recorded with each result, and the flags of
`experiments.barrier` (one per setting). Built-in methods (`method_names()` lists them):
weight, activation, ste, sinkhorn, mergemany, exact, orthogonal, orthogonal_activation.

Every method returns one permutation per model (identity at the reference and at models
left out), so the same all-pairs sweep measures them all; a method may also return, per
model, orthogonal maps of the groups the network lets rotate (`orthogonal`,
`orthogonal_activation`).

Methods installed as packages register through the entry-point group
`lmc_jax.align_methods` (each entry point names a module to import).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from lmc_jax.config import ConfigError
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan
from lmc_jax.symmetry.spec import (
  PermutationSpec,
  identity_permutation,
  orient_zoo,
  perm_sizes,
  without_signs,
)
from lmc_jax.tree_utils import take, to_numpy

Perm = Dict[str, np.ndarray]


class Setting(NamedTuple):
  """One knob of one or more methods; its type is the type of its default. `low` is its
  least value (inclusive), `above` a bound it must exceed: a count of sweeps or steps is
  at least 1, a learning rate above 0."""
  name: str
  default: Any  # int, float, str or bool
  help: str
  choices: Optional[Tuple[str, ...]] = None
  low: Optional[float] = None
  above: Optional[float] = None

  def check(self, value) -> None:
    """A `ConfigError` naming the setting where `value` is not of its type or bounds."""
    field = f"settings.{self.name}"
    if self.choices is not None and value not in self.choices:
      raise ConfigError(field, f"must be one of {', '.join(self.choices)}, got {value!r}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(self.default, (int, float)) and not isinstance(self.default, bool):
      if not number or (isinstance(self.default, int) and not isinstance(value, int)):
        raise ConfigError(field, f"must be a number like {self.default!r}, got {value!r}")
      if value != value:
        raise ConfigError(field, "must be a number, got nan")
    if self.low is not None and value < self.low:
      raise ConfigError(field, f"must be >= {self.low}, got {value!r}")
    if self.above is not None and not value > self.above:
      raise ConfigError(field, f"must be > {self.above}, got {value!r}")


class AlignTask(NamedTuple):
  """What a method is given: the zoo, which models to align, data, settings, and how it
  runs. Made once per zoo (`AlignTask.make`) and handed to every method."""
  model: Any  # Flax module of one model
  spec: PermutationSpec
  params: dict  # stacked zoo, numpy arrays, model on axis 0
  reference: int
  skip: frozenset  # models that keep the identity (diverged ones)
  fit_x: np.ndarray  # training inputs, at most `fit_samples` of them
  fit_y: np.ndarray
  eval_x: np.ndarray  # the split the curves are measured on
  eval_y: np.ndarray
  settings: "MethodSettings"
  plan: Optional[ExecutionPlan] = None  # how it runs (default: `execution.default_plan()`)
  reset_x: Optional[object] = None  # (R, b, d) training batches the curves' BatchNorm
  #   statistics are recomputed on (`lmc.batchnorm`), or None: methods that measure lines
  #   (exact search) measure them so

  @classmethod
  def make(cls, model, spec: PermutationSpec, params, reference: int = 0, skip=(),
           fit_x=None, fit_y=None, eval_x=None, eval_y=None,
           settings: Optional["MethodSettings"] = None, plan: Optional[ExecutionPlan] = None,
           reset_x=None) -> "AlignTask":
    """A task over the stacked zoo `params` (copied to the host), its training inputs cut
    to `settings.fit_samples` (default settings: every setting's default)."""
    settings = settings if settings is not None else MethodSettings()
    n = settings.fit_samples
    cut = lambda a: None if a is None else np.asarray(a)[:n]
    return cls(model, spec, to_numpy(params), int(reference), frozenset(skip), cut(fit_x),
               cut(fit_y), eval_x, eval_y, settings, plan, reset_x)

  @property
  def key(self):
    return jax.random.key(self.settings.seed)

  @property
  def num_models(self) -> int:
    return jax.tree_util.tree_leaves(self.params)[0].shape[0]

  @property
  def movers(self) -> List[int]:
    """Models to align: all but the reference and the skipped ones."""
    return [k for k in range(self.num_models) if k != self.reference and k not in self.skip]

  def member(self, k: int) -> dict:
    return take(self.params, k)

  def star(self, align_one: Callable[[int], Perm]) -> List[Perm]:
    """One permutation per model: `align_one(k)` for every mover, the identity otherwise."""
    sizes = perm_sizes(self.spec, self.member(self.reference))
    movers = set(self.movers)
    return [align_one(k) if k in movers else identity_permutation(sizes)
            for k in range(self.num_models)]


class Alignment(NamedTuple):
  """What a method returns."""
  perms: List[Perm]  # one per model, applied to it to bring it into the shared frame
  info: dict  # what the method reports about itself (JSON-ready)
  maps: Optional[List[Perm]] = None  # per model: group -> orthogonal (n, n), applied with
  #   the permutations (they act on other groups); None: permutations only


class AlignMethod(NamedTuple):
  name: str
  align: Callable[[AlignTask], Alignment]
  uses: Tuple[str, ...]  # names of the settings it reads (recorded with its results)
  help: str


class MethodResult(NamedTuple):
  params: dict  # the zoo, every model permuted (and rotated) into the shared frame
  perms: List[Perm]  # one per model
  info: dict  # what the method reports about itself (JSON-ready)
  seconds: float
  maps: Optional[List[Perm]] = None  # one per model, of the rotating groups, or None


_METHODS: Dict[str, AlignMethod] = {}
_SETTINGS: Dict[str, Setting] = {}
_PLUGINS_LOADED = [False]


def _add_setting(setting: Setting) -> None:
  old = _SETTINGS.get(setting.name)
  if old is not None and (old.default, old.choices) != (setting.default, setting.choices):
    raise LmcError(f"Setting {setting.name!r} is declared twice with different defaults "
                   f"({old.default!r}, {setting.default!r}); give the new one another name.")
  if setting.choices is not None and setting.default not in setting.choices:
    raise LmcError(f"Setting {setting.name!r}: default {setting.default!r} is not one of its "
                   f"choices {setting.choices}.")
  _SETTINGS.setdefault(setting.name, setting)


# Settings that several methods (and REPAIR and the diagnostics) read.
for _s in (Setting("seed", 0, "Seed of layer orders, batches and alphas of the methods.",
                   low=0),
           Setting("max_iter", 50, "Most weight-matching sweeps over the hidden layers.", low=1),
           Setting("fit_samples", 2048, "Training inputs for activation matching, STE, Sinkhorn "
                   "and REPAIR statistics.", low=1),
           Setting("signs", True, "Where the network lets units flip signs (tanh nets, a norm's "
                   "affine map before a linear layer), weight and activation matching, STE and "
                   "MergeMany search signed permutations; false: plain permutations only "
                   "(Sinkhorn and exact search always).")):

  _add_setting(_s)


def register(name: str, help: str, uses: Sequence[str] = (), settings: Sequence[Setting] = ()):
  """Decorator: registers `align(task) -> Alignment` as method `name`.

  `uses` names shared settings it reads; `settings` declares its own (named after the
  method, e.g. `ste_steps`). Registering a name again replaces the method.
  """
  if not name or not name.replace("_", "").isalnum():
    raise LmcError(f"Alignment method name {name!r} must be letters, digits and underscores.")
  for s in settings:
    _add_setting(s)
  unknown = [u for u in uses if u not in _SETTINGS]
  if unknown:
    raise LmcError(f"Method {name!r} uses undeclared settings {unknown}; declare them in "
                   "`settings=`.")

  def wrap(align: Callable[[AlignTask], Alignment]):
    own = tuple(s.name for s in settings)
    _METHODS[name] = AlignMethod(name, align, tuple(dict.fromkeys(tuple(uses) + own)), help)
    return align
  return wrap


def unregister(name: str) -> None:
  """Removes method `name` (its settings stay declared)."""
  _METHODS.pop(name, None)


def method_names() -> Tuple[str, ...]:
  """Registered methods (plug-ins included), in the order they registered."""
  _load_plugins_once()
  return tuple(_METHODS)


def get_method(name: str) -> AlignMethod:
  check_methods([name])
  return _METHODS[name]


def all_settings() -> Tuple[Setting, ...]:
  """Every declared setting (plug-ins' included)."""
  _load_plugins_once()
  return tuple(_SETTINGS.values())


def check_methods(names: Sequence[str]) -> List[str]:
  """`names` without repeats, or an LmcError naming the unknown ones."""
  _load_plugins_once()
  unknown = [n for n in names if n not in _METHODS]
  if unknown or not names:
    raise LmcError(f"Unknown alignment method(s) {', '.join(unknown) or '(none given)'}; use "
                   f"one or more of {', '.join(_METHODS)}, comma-separated.")
  return list(dict.fromkeys(names))


class MethodSettings:
  """Values of the registered settings (each its default unless given), recorded with the
  results of every method that reads them. `MethodSettings(ste_steps=5).ste_steps == 5`."""

  def __init__(self, **values):
    _load_plugins_once()
    for name, value in values.items():
      if name not in _SETTINGS:
        raise LmcError(f"Unknown alignment setting {name!r}; the settings are "
                       f"{', '.join(sorted(_SETTINGS))}.")
      _SETTINGS[name].check(value)
    self._values = dict(values)

  def __getattr__(self, name: str):
    if name.startswith("_"):
      raise AttributeError(name)
    if name in self._values:
      return self._values[name]
    if name in _SETTINGS:
      return _SETTINGS[name].default
    raise AttributeError(f"no alignment setting {name!r}")

  def replace(self, **changes) -> "MethodSettings":
    return MethodSettings(**dict(self._values, **changes))

  def for_method(self, name: str) -> dict:
    """The settings that affect method `name` (what its barrier.json entry records)."""
    return {k: getattr(self, k) for k in get_method(name).uses}

  def __eq__(self, other) -> bool:
    return isinstance(other, MethodSettings) and all(
        getattr(self, s) == getattr(other, s) for s in _SETTINGS)

  def __repr__(self) -> str:
    return f"MethodSettings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def align_by(name: str, task: AlignTask, *args, **kwargs) -> MethodResult:
  """Aligns the task's zoo by method `name` (see `method_names()`): one permutation per
  model, and the zoo permuted by them. In place of the task, the arguments of
  `AlignTask.make` are accepted (`align_by(name, model, spec, params, reference, skip,
  fit_x, fit_y, eval_x, eval_y, settings)`, as earlier versions took them)."""
  method = get_method(name)
  if not isinstance(task, AlignTask):
    task = AlignTask.make(task, *args, **kwargs)
  if not task.settings.signs:
    task = task._replace(spec=without_signs(task.spec))
  start = time.perf_counter()
  result = method.align(task)
  seconds = time.perf_counter() - start
  if len(result.perms) != task.num_models:
    raise LmcError(f"Alignment method {name!r} returned {len(result.perms)} permutations for "
                   f"{task.num_models} models; it must return one per model.")
  if result.maps is not None and len(result.maps) != task.num_models:
    raise LmcError(f"Alignment method {name!r} returned {len(result.maps)} orthogonal maps for "
                   f"{task.num_models} models; it must return one per model, or None.")
  return MethodResult(orient_zoo(task.spec, result.perms, result.maps, task.params),
                      result.perms, result.info, seconds, result.maps)


PLUGINS_ENV = "LMC_JAX_ALIGN_PLUGINS"


def _load_plugins_once() -> None:
  if not _PLUGINS_LOADED[0]:
    _PLUGINS_LOADED[0] = True
    load_plugins()


def load_plugins() -> None:
  """Imports the modules that register further methods: those installed packages name in
  the entry-point group `lmc_jax.align_methods`, and those listed, comma-separated, in the
  environment variable LMC_JAX_ALIGN_PLUGINS (importable module names)."""
  for ep in importlib.metadata.entry_points(group="lmc_jax.align_methods"):
    try:
      ep.load()
    except Exception as e:  # a broken plugin must not stop the built-in methods
      logging.warning("alignment method plugin %s (entry point %s) could not be loaded: %s; "
                      "reinstall or remove the package that declares it.", ep.value, ep.name, e)
  for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
    try:
      importlib.import_module(module)
    except Exception as e:
      logging.warning("alignment method plugin %s (from %s) could not be imported: %s; put it "
                      "on PYTHONPATH or remove it from %s.", module, PLUGINS_ENV, e, PLUGINS_ENV)
