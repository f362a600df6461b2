"""The study's E5 on a zoo on disk: merge redundant units, then measure the reduced nets.

Writes `<zoo>/redundancy.json`: the threshold, per model the width after merging and the
reduced net's test loss and accuracy, and epsilon per pair for the reduced nets, naive and
after re-aligning them to the reference (the study's code skipped that re-alignment).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.align.weight import align_zoo
from lmc_jax.analysis.barrier import read_barrier_json
from lmc_jax.analysis.study_numbers import MOONS_TABLE_5_1
from lmc_jax.analysis.unit_merging import reduce_zoo
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.config import ZooConfig
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.lmc.measures import curve_set
from lmc_jax.nn.architectures import describe_width
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.nn.forward import split_tree
from lmc_jax.nn.models import is_one_hidden_layer_mlp
from lmc_jax.result_files import BARRIER_JSON, REDUNDANCY_JSON
from lmc_jax.study_records import RedundancyRecord
from lmc_jax.symmetry.spec import mlp_permutation_spec
from lmc_jax.tree_utils import take, to_numpy
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import package_versions


def analyse_redundancy(zoo, threshold: float = 0.99, reference: int = 0, seed: int = 0,
                       max_iter: int = 50, data_dir="data") -> RedundancyRecord:
  """Merges each model's redundant units of the zoo `zoo` (a `ZooHandle`, or its
  directory) and measures the reduced nets; writes and returns redundancy.json's record."""
  with held_zoo(zoo, "redundancy analysis") as zoo:
    return _merged_and_measured(zoo, threshold, reference, seed, max_iter, data_dir)


def _merged_and_measured(zoo, threshold, reference, seed, max_iter, data_dir):
  directory, config, model, record = zoo.directory, zoo.config, zoo.model, zoo.record
  params = split_tree(zoo.variables)[0]
  if not is_one_hidden_layer_mlp(model):
    raise LmcError(f"{directory}: merging handles the study's MLP with one hidden layer and "
                   f"no LayerNorm (its Moons nets); this zoo's network is "
                   f"{describe_width(config.model)}.")
  if not 0 < threshold <= 1:
    raise LmcError(f"--threshold must be in (0, 1], got {threshold}.")
  usable = list(zoo.usable)
  if len(usable) < 2 or reference not in usable:
    raise LmcError(f"{directory} needs at least 2 usable models including reference {reference}.")
  n = record.num_models
  data = zoo.dataset(data_dir)
  reduced, widths = reduce_zoo(jax.tree_util.tree_map(np.asarray, params), threshold)
  rmodel = model.clone(hidden=(int(widths.max(initial=1)),))
  loss, acc = evaluate_zoo(rmodel, reduced, data.x_test, data.y_test)
  pairs = all_pairs(n, exclude=set(range(n)) - set(usable))
  naive = pair_sweep(rmodel, reduced, pairs, data.x_test, data.y_test)
  aligned_params = align_zoo(jax.random.key(seed), mlp_permutation_spec(1), reduced, reference,
                             max_iter, skip=set(range(n)) - set(usable)).params
  aligned = pair_sweep(rmodel, aligned_params, pairs, data.x_test, data.y_test)
  result = RedundancyRecord(str(directory), threshold, reference, naive.alphas,
                            config.model.hidden[0], widths, loss, acc, usable, curve_set(naive),
                            curve_set(aligned), record.params_sha256, package_versions())
  atomic_write_json(directory / REDUNDANCY_JSON, result.to_json())
  return result


class RedundancyRow(NamedTuple):
  """One zoo's line of Table 5.1 and what the figures of E5 draw from it."""
  row: dict  # width, merged_width, study_merged_width, acc before/after, eps medians
  orig_naive: list  # epsilon of the original nets (barrier.json), [] if not measured
  red_naive: list  # epsilon of the merged nets, naive
  red_aligned: list  # and re-aligned to the reference
  config: ZooConfig
  models: tuple  # (first, second) usable model
  first: dict  # params of the first
  second: dict  # of the second


def original_epsilon(directory, num_models: int, params_sha256: Optional[str] = None) -> list:
  """Naive epsilon per pair of the zoo's own nets, from its barrier.json ([] if there is
  none); a damaged one, or one computed from params other than `params_sha256` (the zoo's
  now), is refused in one sentence."""
  if not (Path(directory) / BARRIER_JSON).exists():
    return []
  return read_barrier_json(directory, num_models, params_sha256).curves("naive").epsilon.tolist()


def redundancy_row(zoo, threshold: float = 0.99, reference: int = 0,
                   data_dir="data") -> RedundancyRow:
  """`analyse_redundancy` of one zoo (a `ZooHandle`, or its directory), summarised beside the
  study's Table 5.1."""
  with held_zoo(zoo, "redundancy analysis") as zoo:  # the lock, then the zoo
    orig = original_epsilon(zoo.directory, zoo.num_models, zoo.record.params_sha256)
    res = analyse_redundancy(zoo, threshold, reference, data_dir=data_dir)
  w, ok = res.width, list(res.models)
  study = MOONS_TABLE_5_1.get(w, (float("nan"), float("nan")))
  # Means in float64, whatever precision the reduced nets were evaluated in.
  row = {"width": w, "merged_width": float(np.mean(res.reduced_width[ok], dtype=np.float64)),
         "study_merged_width": study[0],
         "test_acc_before": float(np.mean([zoo.record.models[k].test_acc for k in ok])),
         "test_acc_after": float(np.mean(res.reduced_test_acc[ok], dtype=np.float64)),
         "study_test_acc_after": study[1],
         "eps_naive_median": float(np.median(res.naive.epsilon)),
         "eps_aligned_median": float(np.median(res.aligned.epsilon))}
  host = to_numpy(split_tree(zoo.variables)[0])
  return RedundancyRow(row, orig, res.naive.epsilon.tolist(), res.aligned.epsilon.tolist(),
                       zoo.config, (ok[0], ok[1]), take(host, ok[0]), take(host, ok[1]))
