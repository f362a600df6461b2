"""A zoo opened once: `open_zoo(directory)` reads and checks zoo.json and params.npz, builds
the network its config describes and holds them, so analyses and entry points take one
handle rather than a directory they each open again.

The permutation spec is derived from the network when it is first asked for (and kept:
`symmetry.derive.network_spec` is cached per network), so a zoo whose network
`derive_spec` can not follow still opens for what needs no spec.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Optional, Tuple

from lmc_jax.config import ZooConfig
from lmc_jax.data.dataset import Dataset, DatasetInfo
from lmc_jax.data.datasets import load_dataset
from lmc_jax.dir_lock import DirLock
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import build_network
from lmc_jax.records import ZooRecord, recorded_params_sha256
from lmc_jax.result_files import ZOO_JSON
from lmc_jax.symmetry.derive import network_spec
from lmc_jax.symmetry.spec import PermutationSpec, validate_spec
from lmc_jax.tree_utils import take
from lmc_jax.zoo.io import network_of, read_variables, read_zoo_json


@dataclasses.dataclass(frozen=True, eq=False)
class ZooHandle:
  """A zoo read from disk, whole and checked against the network its config describes."""
  directory: Path
  record: ZooRecord  # its zoo.json
  info: DatasetInfo  # what the network's inputs and classes are
  model: object  # the Flax module of one model
  variables: dict  # every model's variables dict, numpy arrays, model on axis 0

  @property
  def config(self) -> ZooConfig:
    return self.record.config

  @property
  def num_models(self) -> int:
    return self.record.num_models

  @property
  def usable(self) -> Tuple[int, ...]:
    """Models that did not diverge (every statistic and figure leaves the others out)."""
    return self.record.usable

  @property
  def spec(self) -> PermutationSpec:
    """The permutation spec of the network, over one model's whole variables dict."""
    spec = network_spec(self.model, self.info.d_in)
    validate_spec(spec, self.variables, batch_dims=1)
    return spec

  def member(self, k: int) -> dict:
    """Model `k`'s variables dict."""
    return take(self.variables, k)

  def at_precision(self, precision: str) -> "ZooHandle":
    """The same zoo with its network's matmuls at `precision` (a sweep in bf16 of a zoo
    trained in fp32, or the other way round)."""
    if precision == self.config.model.precision:
      return self
    return dataclasses.replace(
        self, model=build_network(self.config.model.replace(precision=precision), self.info))

  def dataset(self, data_dir="data") -> Dataset:
    """The dataset the zoo was trained on (its subsets drawn again)."""
    return load_dataset(self.config.data, data_dir)


def open_zoo(directory, record: Optional[ZooRecord] = None) -> ZooHandle:
  """The zoo in `directory` (or `directory` itself, already a handle), read and checked once
  (zoo.json's fields, params.npz's checksum and every leaf's shape against the network):
  one sentence naming the file and the fix for anything wrong. `record`: its zoo.json,
  where a caller has read it already (an entry point checks every zoo's before any work).
  Warns once naming each diverged model."""
  if isinstance(directory, ZooHandle):
    return directory
  directory = Path(directory)
  record = read_zoo_json(directory) if record is None else record
  model, info, shapes = network_of(record, directory)
  variables = read_variables(directory, record, shapes)
  for k in record.diverged:
    logging.warning("%s: model %d diverged (non-finite loss); it is left out of every "
                    "statistic and figure.", directory, k)
  return ZooHandle(directory, record, info, model, variables)


_HELD: dict = {}  # realpath of a zoo directory this process holds -> how many holds


@contextlib.contextmanager
def held_zoo(zoo, what: str, record: Optional[ZooRecord] = None):
  """Yields the zoo `zoo` (a directory, or a handle opened before) opened while this process
  holds its directory's lock (`dir_lock.DirLock`, with `what` naming the analysis), so no
  zoo run swaps another zoo in while it is read and analysed, and no result computed from
  one zoo lands beside another.

  A directory is opened under the lock (`record`, its zoo.json read before, is used only if
  it still describes the params there); a handle is checked against the params now there,
  and refused in one sentence if the zoo was replaced since it was opened. Holding the same
  directory again within one process (an entry point, then the library) nests."""
  directory = Path(zoo.directory if isinstance(zoo, ZooHandle) else zoo)
  key = os.path.realpath(directory)
  lock = DirLock(directory, what) if not _HELD.get(key) else contextlib.nullcontext()
  with lock:
    _HELD[key] = _HELD.get(key, 0) + 1
    try:
      opened_from = zoo.record if isinstance(zoo, ZooHandle) else record
      now = recorded_params_sha256(directory / ZOO_JSON)
      if opened_from is not None and now != opened_from.params_sha256:
        if isinstance(zoo, ZooHandle):
          raise LmcError(f"{directory} holds another zoo than the one this analysis opened (it "
                         "was replaced since, by a zoo run with --overwrite?); run the analysis "
                         "again to analyse the zoo there now.")
        record = None  # read again, under the lock
      yield zoo if isinstance(zoo, ZooHandle) else open_zoo(directory, record)
    finally:
      _HELD[key] -= 1


def check_reference(zoo: ZooHandle, reference: int) -> int:
  """`reference`, or one sentence saying why it can not be the reference of `zoo`."""
  n, usable = zoo.num_models, zoo.usable
  if len(usable) < 2:
    raise LmcError(f"{zoo.directory} has {len(usable)} usable model(s); comparing needs at "
                   "least 2, so train the zoo with --num_models >= 2.")
  if not 0 <= reference < n:
    raise LmcError(f"Reference model {reference} is not in {zoo.directory} (models "
                   f"0..{n - 1}); pass --reference within that range.")
  if reference not in usable:
    raise LmcError(f"Reference model {reference} of {zoo.directory} diverged; pass another "
                   f"--reference, e.g. {usable[0]}.")
  return reference
