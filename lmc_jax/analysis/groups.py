"""Several zoos of one architecture as one labelled zoo (the study's E6/E7: inits x
optimizers), with epsilon matrices under three alignments: every model to one reference
(the best overall, or the best of each group), or every pair aligned directly.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.align.weight import align_pairs, align_zoo
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.data.datasets import dataset_slug, load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep, pairwise_aligned_sweep
from lmc_jax.lmc.measures import epsilon, mean_std, pair_matrix
from lmc_jax.result_files import dynamics_json
from lmc_jax.study_records import DynamicsRecord, GroupRow
from lmc_jax.tree_utils import stack
from lmc_jax.zoo.handle import held_zoo, open_zoo
from lmc_jax.zoo.io import package_versions


class GroupedZoo(NamedTuple):
  config: object  # ZooConfig of the first zoo (the architecture is shared)
  model: object
  spec: object  # the network's PermutationSpec
  params: dict  # stacked over every usable model of every zoo
  groups: np.ndarray  # (N,) group index of each model
  labels: List[str]  # group index -> label: 'init / optimizer'
  origin: List[tuple]  # (zoo directory, model index in it) of each model
  test_loss: np.ndarray  # (N,)
  test_acc: np.ndarray  # (N,)


def combine_zoos(zoos) -> GroupedZoo:
  """The zoos (`ZooHandle`s, or their directories) as one, each a group."""
  zoos = [open_zoo(z) for z in zoos]
  parts, arch, inits = [], None, {}
  for g, zoo in enumerate(zoos):
    d, config, model, params, record = zoo.directory, zoo.config, zoo.model, zoo.variables, \
        zoo.record
    same = inits.setdefault((config.train.seed, config.model.init), d)
    if same != d:
      logging.warning("%s and %s use seed %d and init %s, so model k of one starts from model "
                      "k's initialisation in the other and they look connected for that reason "
                      "alone; train each zoo with its own --seed to compare independent nets.",
                      same, d, config.train.seed, config.model.init)
    # The network, whatever its init: zoos of one architecture on one dataset compare.
    key = (config.data.dataset, config.model.replace(init="pytorch"))
    if arch is None:
      arch, first = key, (config, model, zoo.spec)
    elif key != arch:
      raise LmcError(f"{d} has architecture {key}, unlike {arch} of {zoos[0].directory}; only "
                     "zoos of one architecture can be compared.")
    ok = list(zoo.usable)
    parts.append((g, f"{config.model.init} / {config.optim.optimizer}", d, ok,
                  jax.tree_util.tree_map(lambda v: np.asarray(v)[ok], params),
                  [record.models[k] for k in ok]))
  labels = [p[1] for p in parts]
  if len(set(labels)) != len(labels):  # same family twice (e.g. other seeds): tell them apart
    labels = [f"{label} ({Path(p[2]).name})" for label, p in zip(labels, parts)]
  joined = stack([p[4] for p in parts], np.concatenate)
  return GroupedZoo(
      *first, joined,
      np.concatenate([np.full(len(p[3]), p[0]) for p in parts]), labels,
      [(str(p[2]), k) for p in parts for k in p[3]],
      np.array([m.test_loss for p in parts for m in p[5]]),
      np.array([m.test_acc for p in parts for m in p[5]]))


class GroupMatrices(NamedTuple):
  """Epsilon matrices `(N, N)` of a grouped zoo, by alignment: 'naive'; 'best' (all aligned
  to the lowest-test-loss model); 'best_of_<label>' for each group; 'pairwise' (each pair
  aligned directly, if asked); and the reference model of each star alignment."""
  matrices: Dict[str, np.ndarray]
  references: Dict[str, int]


def group_epsilon_matrices(zoo: GroupedZoo, seed: int = 0, max_iter: int = 50,
                           pairwise: bool = True, data_dir="data") -> GroupMatrices:
  """Epsilon matrices `(N, N)` of a grouped zoo on the test split (see `GroupMatrices`)."""
  data = load_dataset(zoo.config, data_dir)
  n = len(zoo.groups)
  if n < 2:
    raise LmcError("The zoos hold fewer than 2 usable models together; train more.")
  pairs = all_pairs(n)
  spec = zoo.spec
  key = jax.random.key(seed)

  def matrix(curves):
    return pair_matrix(epsilon(curves.loss, curves.alphas), pairs, n)

  out = {"naive": matrix(pair_sweep(zoo.model, zoo.params, pairs, data.x_test, data.y_test))}
  refs = {"best": int(np.argmin(zoo.test_loss))}
  for g, label in enumerate(zoo.labels):
    members = np.where(zoo.groups == g)[0]
    refs[f"best_of_{label}"] = int(members[np.argmin(zoo.test_loss[members])])
  for name, ref in refs.items():
    aligned = align_zoo(key, spec, zoo.params, ref, max_iter).params
    out[name] = matrix(pair_sweep(zoo.model, aligned, pairs, data.x_test, data.y_test))
  if pairwise:
    aligned_j = align_pairs(key, spec, zoo.params, pairs, max_iter)
    out["pairwise"] = matrix(pairwise_aligned_sweep(zoo.model, zoo.params, aligned_j, pairs,
                                                    data.x_test, data.y_test))
  return GroupMatrices(out, refs)


def within_across(m: np.ndarray, groups: np.ndarray, g: int):
  """Median of `m` over pairs inside group g, and over pairs of g with the other groups."""
  inside = groups == g
  w = m[np.ix_(inside, inside)][np.triu_indices(inside.sum(), 1)]
  a = m[np.ix_(inside, ~inside)].ravel()
  med = lambda v: float(np.median(v)) if v.size else float("nan")
  return med(w), med(a)


class GroupComparison(NamedTuple):
  """What `compare_groups` found (and wrote to `<name>_dynamics.json`)."""
  zoo: GroupedZoo
  record: DynamicsRecord  # the matrices, the references and one row per group
  name: str  # the comparison's name (its files' prefix)
  path: Path  # the JSON written

  @property
  def rows(self) -> List[dict]:
    """Per group, as a table prints it: label, models, test loss and acc, eps within and
    across."""
    return [row.to_json() for row in self.record.table]


def compare_groups(zoos, name: Optional[str], out_dir, seed: int = 0, max_iter: int = 50,
                   pairwise: bool = True, data_dir="data") -> GroupComparison:
  """Zoos (`ZooHandle`s, or their directories) of one architecture as groups (the study's
  Tables 5.2, 5.3 and E6-E8): test metrics per group and median epsilon within and across
  groups after aligning all to the best model; writes `<out_dir>/<name>_dynamics.json`
  (`name` by default `<dataset>_w<width>`), holding every zoo's lock throughout
  (`zoo.handle.held_zoo`)."""
  if len(zoos) < 2:
    raise LmcError("--zoo needs at least two zoos (one per configuration) to compare.")
  # Every zoo's lock first (held already where the entry point took them): no zoo run swaps
  # another zoo in while they are read and compared.
  with contextlib.ExitStack() as held:
    zoos = [held.enter_context(held_zoo(z, "dynamics analysis")) for z in zoos]
    zoo = combine_zoos(zoos)
    name = name or f"{dataset_slug(zoo.config.data.dataset)}_w{zoo.config.model.hidden[0]}"
    found = group_epsilon_matrices(zoo, seed, max_iter, pairwise, data_dir)
    table = []
    for g, label in enumerate(zoo.labels):
      sel = zoo.groups == g
      within, across = within_across(found.matrices["best"], zoo.groups, g)
      table.append(GroupRow(label, int(sel.sum()), mean_std(zoo.test_loss[sel]),
                            mean_std(zoo.test_acc[sel]), within, across))
    record = DynamicsRecord([str(z.directory) for z in zoos], zoo.labels, zoo.groups, zoo.origin,
                            found.references, table, found.matrices, package_versions())
    path = Path(out_dir) / dynamics_json(name)
    atomic_write_json(path, record.to_json())
    return GroupComparison(zoo, record, name, path)
