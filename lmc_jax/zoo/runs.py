"""Zoo runs on disk: where a zoo lives, reusing a finished one after checking it, resuming an
unfinished one, replacing one whole."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import List, Optional

import jax

from lmc_jax.atomic_files import (
  aside_name,
  link_or_copy,
  recover_directory,
  remove_stale_asides,
  remove_stale_temporaries,
  replace_directory,
)
from lmc_jax.config import RunOptions, ZooConfig, default_config
from lmc_jax.crash_points import crash_point
from lmc_jax.data.datasets import dataset_slug, load_dataset
from lmc_jax.data.splits import class_counts
from lmc_jax.dir_lock import DirLock
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan
from lmc_jax.nn.architectures import family_part, takes_depth
from lmc_jax.preflight import check_output_dir
from lmc_jax.records import ZooRecord
from lmc_jax.result_files import ZOO_DIR_FILES, ZOO_JSON
from lmc_jax.split_spec import parse_split
from lmc_jax.stopping import deferred, note_saved, stop_if_asked
from lmc_jax.zoo.checkpoint import Checkpointer
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.io import network_of, read_variables, read_zoo_json, save_zoo
from lmc_jax.zoo.training import train_zoo


def zoo_family(config: ZooConfig) -> str:
  """`moons`, or `cifar10_sgd`, `moons_kaiming_normal_rmsprop`, `cifar10_resnet20`,
  `mnist_d1`, `mnist_classes0-4`, `modular_addition_transformer_p11`: the dataset, what the
  architecture adds (`nn.architectures.family_part`), the MLP's depth, the token task's
  modulus and train fraction, then the init and optimizer, each where
  it differs from the dataset's defaults, then the training split (`split_spec.Split.slug`)."""
  default = default_config(config.data.dataset, arch=config.model.arch)
  parts = [dataset_slug(config.data.dataset), family_part(config.model)]
  depth = len(config.model.hidden)
  if takes_depth(config.model.arch) and depth != len(default.model.hidden):
    parts.append(f"d{depth}")
  if config.data.modulus != default.data.modulus:  # the token task's generation
    parts.append(f"p{config.data.modulus}")
  if config.data.train_fraction != default.data.train_fraction:
    parts.append(f"f{config.data.train_fraction:g}")
  if config.model.init != default.model.init:
    parts.append(config.model.init)
  if config.optim.optimizer != default.optim.optimizer:
    parts.append(config.optim.optimizer)
  if config.data.train_split:  # two parts of one split never share a directory
    parts.append(parse_split(config.data.train_split).slug)
  return "_".join(p for p in parts if p)


def zoo_dirname(config: ZooConfig) -> str:
  """`moons_w512`, `cifar10_sgd_w128`, `mnist_d1_w32`: family and hidden width (every
  width, `moons_d2_w8-4`, where the layers' differ)."""
  widths = config.model.hidden
  width = str(widths[0]) if len(set(widths)) == 1 else "-".join(map(str, widths))
  return f"{zoo_family(config)}_w{width}"


def run_zoo(config: ZooConfig, directory, options: RunOptions = RunOptions(),
            plan: Optional[ExecutionPlan] = None) -> Optional[ZooRecord]:
  """Trains the zoo `config` into `directory` and returns the record of its zoo.json (None
  on every process but the first when several hosts train it together). `options` say how
  (`config.RunOptions`), `plan` on what (`execution.ExecutionPlan`):

  - A finished zoo with the same config is reused once its params pass their checksum
    and fit the model; a damaged one is trained again. A zoo with another config, or a
    zoo.json that cannot be read, is an error unless `options.overwrite`.
  - Training checkpoints into the directory every `options.checkpoint_every` epochs (0: by
    time only) and at most every `options.checkpoint_minutes` (0: never by time); the same
    call after a kill continues from the last checkpoint (unless `options.resume` is False)
    and ends with the zoo an uninterrupted run writes.
  - The new zoo is built beside the directory and swapped in whole (see
    `atomic_files.replace_directory`), carrying over files lmc_jax did not write; results
    computed from an old zoo (barrier.json, ...) are left behind with it.
  - One process at a time: a second run on the same directory is refused, naming the first.
  """
  directory = Path(directory)
  check_output_dir(directory.parent, "--out")
  config.validate()
  options.validate()
  if jax.process_index() != 0:
    # Several hosts: the first one owns the directory; the others make the same decision
    # from the same files (reuse, or train with it), writing nothing.
    doc = _reusable(config, directory, options.overwrite)
    return doc if doc is not None else _train_and_save(config, directory, options, plan)
  if recover_directory(directory, _is_whole_zoo):
    logging.warning("%s: a run was killed while swapping in its new zoo; the whole one it "
                    "left beside the directory is now in place.", directory)
  with DirLock(directory, "zoo run"):
    removed = remove_stale_asides(directory) + remove_stale_temporaries(directory)
    if removed:
      logging.info("%s: removed what killed runs left: %s", directory, ", ".join(removed))
    doc = _reusable(config, directory, options.overwrite)
    if doc is not None:
      return doc
    return _train_and_save(config, directory, options, plan)


def _is_whole_zoo(path: Path) -> bool:
  try:
    open_zoo(path)
    return True
  except LmcError:
    return False


def foreign_entries(directory: Path) -> list:
  """Names in `directory` that lmc_jax did not write (hidden temporaries count as its)."""
  if not directory.is_dir():
    return []
  return sorted(p.name for p in directory.iterdir()
                if p.name not in ZOO_DIR_FILES and not p.name.endswith(".tmp"))


def _reusable(config: ZooConfig, directory: Path, overwrite: bool) -> Optional[ZooRecord]:
  """The zoo.json of a finished, whole zoo of `config` in `directory` to reuse; None to
  train; an error where training would replace what the user did not ask to replace."""
  if not (directory / ZOO_JSON).exists():
    foreign = foreign_entries(directory)
    if foreign and not overwrite:
      raise LmcError(f"{directory} exists and is not a zoo (it holds {', '.join(foreign[:5])}"
                     f"{', ...' if len(foreign) > 5 else ''}); pass another --out, or "
                     "--overwrite to write the zoo into it (its files are kept).")
    return None
  try:
    record = read_zoo_json(directory)
  except LmcError as e:
    if overwrite:
      logging.warning("%s: replacing a zoo that cannot be read (%s)", directory, e)
      return None
    raise LmcError(f"{directory} holds a zoo.json that cannot be read ({e}); pass --overwrite "
                   "to train the zoo again in its place.") from None
  if record.config != config:
    if overwrite:
      return None
    raise LmcError(f"{directory} already holds a zoo with another config; pass --overwrite to "
                   "replace it, or another --out.")
  if overwrite:
    return None
  try:  # the record read once: its params checked against it and the network it describes
    read_variables(directory, record, network_of(record, directory)[2])
  except LmcError as e:
    logging.warning("%s holds this zoo but it is damaged (%s); training it again.", directory, e)
    return None
  logging.info("%s already holds this zoo; reusing it (pass --overwrite to retrain).", directory)
  return record


def _train_and_save(config: ZooConfig, directory: Path, options: RunOptions,
                    plan: Optional[ExecutionPlan]) -> Optional[ZooRecord]:
  dataset = load_dataset(config.data, options.data_dir)
  first = jax.process_index() == 0
  checkpointer = Checkpointer(directory, config, options.checkpoint_every,
                              60.0 * options.checkpoint_minutes, write=first)
  if not options.resume and first:
    checkpointer.remove()
  start = time.perf_counter()
  with deferred():  # a stop signal waits for the next checkpoint, or the whole zoo swapped in
    zoo = train_zoo(config, dataset, label=str(directory), eval_every=options.eval_every,
                    checkpoint=checkpointer, plan=plan)
    seconds = time.perf_counter() - start
    if not first:  # several hosts trained it together; the first one writes
      return None
    staged = aside_name(directory, "new")
    shutil.rmtree(staged, ignore_errors=True)
    try:
      save_zoo(staged, config, zoo.variables, zoo.metrics, history=zoo.history,
               train_seconds=seconds, data_source=dataset.source,
               train_class_counts=class_counts(dataset.y_train, dataset.num_classes))
      for name in foreign_entries(directory):  # the user's files stay with the directory
        link_or_copy(directory / name, staged / name)
      crash_point("zoo:staged")
      replace_directory(staged, directory)
    except BaseException:  # a full disk, a second signal: no half-built zoo is left beside
      shutil.rmtree(staged, ignore_errors=True)
      raise
  note_saved(str(checkpointer.path), f"the whole zoo {directory}")
  stop_if_asked()
  record = read_zoo_json(directory)
  for k in record.diverged:
    logging.warning("%s: model %d diverged (non-finite loss); it is marked in zoo.json and "
                    "left out of every statistic.", directory, k)
  collapsed = [k for k, m in enumerate(record.models) if m.collapsed]
  if collapsed:
    logging.warning("%s: %d of %d models collapsed to chance test accuracy (models %s); they "
                    "are marked in zoo.json, counted in the tables and kept in every statistic.",
                    directory, len(collapsed), record.num_models, collapsed)
  return record


def find_zoos(root) -> List[Path]:
  """`root` and its direct subdirectories that hold a zoo.json, sorted (deeper folders,
  such as another study's runs, are left alone)."""
  root = Path(root)
  if not root.exists():
    return []
  found = [p.parent for p in [root / ZOO_JSON, *root.glob(f"*/{ZOO_JSON}")] if p.is_file()]
  return sorted(found, key=lambda p: (str(p.parent), _width_key(p), p.name))


def _width_key(path: Path) -> int:
  """The zoo's first hidden width, for sorting (0 where its zoo.json can not be read: the
  reader that loads it says why)."""
  try:
    return ZooRecord.from_json(json.loads((path / ZOO_JSON).read_text()), path / ZOO_JSON) \
        .config.model.hidden[0]
  except (OSError, ValueError):  # LmcError included
    return 0
