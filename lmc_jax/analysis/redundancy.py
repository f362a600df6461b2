"""The study's E5 on a zoo on disk: merge redundant units, then measure the reduced nets.

Writes `<zoo>/redundancy.json`: the threshold, per model the width after merging and the
reduced net's test loss and accuracy, and epsilon per pair for the reduced nets, naive and
after re-aligning them to the reference (the study's code skipped that re-alignment).
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.data.datasets import load_dataset
from lmc_jax.lmc.measures import curves_entry
from lmc_jax.errors import LmcError
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.nn.models import make_mlp
from lmc_jax.align.spec import mlp_permutation_spec
from lmc_jax.analysis.unit_merging import reduce_zoo
from lmc_jax.align.weight import align_zoo
from lmc_jax.zoo.io import load_zoo_checked, package_versions, usable_models

REDUNDANCY_JSON = "redundancy.json"


def analyse_redundancy(directory, threshold: float = 0.99, reference: int = 0, seed: int = 0,
                       max_iter: int = 50, data_dir="data") -> dict:
  directory = Path(directory)
  config, model, params, doc = load_zoo_checked(directory)
  if len(config.hidden) != 1 or config.layernorm != "none":
    raise LmcError(f"{directory}: merging handles one hidden layer without LayerNorm (the "
                   f"study's Moons nets); this zoo has hidden {list(config.hidden)}.")
  if not 0 < threshold <= 1:
    raise LmcError(f"--threshold must be in (0, 1], got {threshold}.")
  usable = usable_models(doc, directory)
  if len(usable) < 2 or reference not in usable:
    raise LmcError(f"{directory} needs at least 2 usable models including reference {reference}.")
  n = doc["num_models"]
  data = load_dataset(config, data_dir)
  reduced, widths = reduce_zoo(jax.tree_util.tree_map(np.asarray, params), threshold)
  rmodel = make_mlp((reduced["Dense_0"]["kernel"].shape[2],), model.d_out, init=config.init)
  loss, acc = evaluate_zoo(rmodel, reduced, data.x_test, data.y_test)
  pairs = all_pairs(n, exclude=set(range(n)) - set(usable))
  naive = pair_sweep(rmodel, reduced, pairs, data.x_test, data.y_test)
  aligned_params = align_zoo(jax.random.key(seed), mlp_permutation_spec(1), reduced, reference,
                             max_iter, skip=set(range(n)) - set(usable)).params
  aligned = pair_sweep(rmodel, aligned_params, pairs, data.x_test, data.y_test)
  result = {
      "zoo": str(directory), "threshold": threshold, "reference": reference, "alphas": naive.alphas.tolist(),
      "width": config.hidden[0], "reduced_width": widths.tolist(),
      "reduced_test_loss": loss.tolist(), "reduced_test_acc": acc.tolist(),
      "models": usable, "naive": curves_entry(naive), "aligned": curves_entry(aligned),
      "params_sha256": doc["params_sha256"], "versions": package_versions(),
  }
  atomic_write_json(directory / REDUNDANCY_JSON, result)
  return result
