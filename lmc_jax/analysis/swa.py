"""SWA on a zoo on disk (the study's E4): continue one model at a constant learning rate,
keep the weights after each epoch as samples, and measure the samples, their running
average and the line between every pair of samples. Writes `<zoo>/swa.json`."""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.lmc.measures import curve_set
from lmc_jax.result_files import SWA_JSON
from lmc_jax.study_records import SwaRecord
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import package_versions
from lmc_jax.zoo.swa import swa


class SwaResult(NamedTuple):
  """One zoo's SWA run: what swa.json records, and how tables and figures name the zoo."""
  width: int
  dataset: str  # the config's dataset ('mnist')
  data_name: str  # the name figures show ('MNIST' source labels where recorded)
  swa: SwaRecord  # the model continued, the losses and the curves between the samples


def swa_zoo(zoo, model: Optional[int] = None, epochs: int = 10, lr: float = 0.05,
            seed: int = 0, data_dir="data", plan: Optional[ExecutionPlan] = None) -> SwaResult:
  """Runs SWA from `model` (default: drawn from `seed` among the usable models) of the zoo
  `zoo` (a `ZooHandle`, or its directory), holding the directory's lock throughout
  (`zoo.handle.held_zoo`); writes swa.json into its directory and returns the result."""
  if epochs < 2:
    raise LmcError(f"--epochs must be >= 2 to have pairs of samples, got {epochs}.")
  # The lock first (held already where the entry point took it): no zoo run swaps another
  # zoo in between reading this one and writing swa.json beside it.
  with held_zoo(zoo, "SWA analysis") as zoo:
    usable, config = list(zoo.usable), zoo.config
    k = model if model is not None else int(np.random.default_rng(seed).choice(usable))
    if k not in usable:
      raise LmcError(f"--model={k} is not a usable model of {zoo.directory}; pick one of "
                     f"{usable[:10]}.")
    data = zoo.dataset(data_dir)
    run = swa(config, data, zoo.member(k), jax.random.key(seed), epochs, lr)
    curves = pair_sweep(zoo.model, run.samples, all_pairs(epochs), data.x_test, data.y_test,
                        plan=plan)
    result = SwaRecord(k, epochs, lr, seed, run.start_loss, run.sample_loss, run.average_loss,
                       curves.alphas, curve_set(curves), package_versions())
    atomic_write_json(zoo.directory / SWA_JSON, result.to_json())
    return SwaResult(config.model.hidden[0], config.data.dataset, zoo.record.data_name, result)
