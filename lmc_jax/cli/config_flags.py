"""The zoo config's flags: one per field of its sections, generated from the fields'
metadata, and the one place where a field and its flag are mapped onto each other (so that
a `ConfigError` naming `optim.lr` reads `--lr` on the command line).

Every field's flag defaults to None, meaning the dataset's setting (`config.default_config`:
the study's per dataset, and what the architecture asks for), except the dataset itself.
`model.hidden` is two flags: `--width` (a list: one zoo per width) and `--depth` (which for
a transformer sets `model.blocks` instead).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from absl import flags

from lmc_jax.config import (
  DATASET_DEFAULTS,
  SECTIONS,
  ConfigError,
  RunOptions,
  ZooConfig,
  default_config,
  field_default,
)
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import names as arch_names
from lmc_jax.nn.architectures import takes_blocks, takes_depth

FLAGS = flags.FLAGS
WIDTH, DEPTH = "width", "depth"  # the flags of model.hidden


def _fields(run: bool = False):
  """(dotted name, field) of every config field, and of the run options with `run`."""
  for section, cls in {**SECTIONS, **({RunOptions.NAME: RunOptions} if run else {})}.items():
    for f in dataclasses.fields(cls):
      yield f"{section}.{f.name}", f


def flag_of(field: str) -> str:
  """`--lr` for `optim.lr` (and `config.optim.lr`); `--width` for `model.hidden`."""
  name = field.split(".")[-1]
  for dotted, f in _fields(run=True):
    if dotted.split(".")[-1] == name:
      return f"--{f.metadata.get('flag') or f.name}"
  return f"--{name}"


def in_flags(error: ConfigError) -> LmcError:
  """`error` worded with the field's flag (`--lr must be > 0, got -1.`)."""
  return error.worded_for(flag_of(error.field))


def _per_dataset(name: str) -> str:
  """`(default: moons 100, mnist 60, cifar10 60)`, or the field's own default where every
  dataset keeps it."""
  values = {d: v[name] for d, v in DATASET_DEFAULTS.items() if name in v}
  own = field_default(name)
  if not values:
    return f"(default: {own})" if own not in (None, "") else ""
  shown = ", ".join(f"{d}: {v}" for d, v in values.items())
  missing = [d for d in DATASET_DEFAULTS if d not in values]
  return f"(default {shown}" + (f"; otherwise {own})" if missing else ")")


def define_config_flags(module_name: str, except_: tuple = ()) -> None:
  """Defines a flag for every config field (but those named in `except_`) and `--width`,
  `--depth` for the hidden widths, as flags of the entry point `module_name` (its `--help`
  lists them)."""
  kinds = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
  for dotted, f in _fields():
    if f.name in except_ or f.name in ("hidden", "blocks"):
      continue
    help = f.metadata["help"]
    if f.name == "dataset":
      flags.DEFINE_string(f.name, f.default, help, module_name=module_name)
      continue
    if f.name == "arch":
      help += f" Built in: {', '.join(arch_names())}."
    help = f"{help} {_per_dataset(f.name)}".strip()
    if f.metadata.get("choices"):
      flags.DEFINE_enum(f.name, None, list(f.metadata["choices"]), help, module_name=module_name)
    else:
      kind = float if f.default is None else type(f.default)
      kinds[kind](f.name, None, help, module_name=module_name)
  if "hidden" not in except_:
    flags.DEFINE_list(WIDTH, ["512"], "Hidden layer width(s), comma-separated; one zoo per "
                      "width (for every network but the MLP: its width multiplier).",
                      module_name=module_name)
    flags.DEFINE_integer(DEPTH, None, "Number of hidden layers of the MLP, each of --width "
                         "units (default: the dataset's, 1 for moons, 3 for mnist); blocks of "
                         "vit and transformer (default 1).",
                         module_name=module_name)


def config_from_flags(width: int, **fixed) -> ZooConfig:
  """The config the flags give for one `width` (the hidden widths `(width,) * depth`);
  `fixed` replaces flags the entry point sets itself. A bad value is refused in the words
  of its flag."""
  values: Dict[str, object] = {}
  for _, f in _fields():
    if f.name != "hidden" and f.name in FLAGS:
      values[f.name] = FLAGS[f.name].value
  values.update(fixed)
  dataset = values.pop("dataset")
  try:
    arch = values.get("arch") or default_config(dataset).model.arch
    depth = FLAGS[DEPTH].value if DEPTH in FLAGS else None
    if takes_blocks(arch):  # --depth counts a transformer's blocks
      if depth is not None:
        values["blocks"] = depth
      depth = 1
    elif not takes_depth(arch):
      if depth is not None:
        raise ConfigError("model.hidden", f"takes one width for {arch}; drop --depth")
      depth = 1
    elif depth is None:
      depth = len(default_config(dataset, arch=arch).model.hidden)
    elif depth < 1:
      raise LmcError(f"--depth must be >= 1, got {depth}.")
    return default_config(dataset, hidden=(width,) * depth, **values)
  except ConfigError as e:
    raise in_flags(e) from None


def define_run_flags(module_name: str) -> None:
  """A flag for every field of `RunOptions`, defaulting to the field's own default, as flags
  of the entry point `module_name`."""
  kinds = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
  for f in dataclasses.fields(RunOptions):
    kinds[type(f.default)](f.name, f.default, f.metadata["help"], module_name=module_name)


def run_options_from_flags() -> RunOptions:
  """The run options the flags give; a bad value is refused in the words of its flag."""
  options = RunOptions(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(RunOptions)})
  try:
    return options.validate()
  except ConfigError as e:
    raise in_flags(e) from None


def widths_from_flags() -> List[int]:
  """The integers of `--width`, or a refusal naming it."""
  values = [v for v in FLAGS[WIDTH].value if v.strip()]
  if not values:
    raise LmcError(f"--{WIDTH} is empty; pass one or more comma-separated integers, e.g. "
                   f"--{WIDTH}=8.")
  try:
    return [int(v) for v in values]
  except ValueError:
    raise LmcError(f"--{WIDTH} must be a comma-separated list of integers, got "
                   f"{','.join(values)}.") from None


def present(name: str) -> Optional[bool]:
  """Whether flag `name` was given on the command line."""
  return FLAGS[name].present if name in FLAGS else None
