"""SWA on a zoo on disk (the study's E4): continue one model at a constant learning rate,
keep the weights after each epoch as samples, and measure the samples, their running
average and the line between every pair of samples. Writes `<zoo>/swa.json`."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.lmc.measures import curves_entry
from lmc_jax.result_files import SWA_FORMAT, SWA_JSON
from lmc_jax.tree_utils import take
from lmc_jax.zoo.io import load_zoo_checked, package_versions, usable_models
from lmc_jax.zoo.swa import swa


class SwaResult(NamedTuple):
  """One zoo's SWA run, as swa.json records it."""
  width: int
  dataset: str  # the config's dataset ('mnist')
  data_name: str  # the name figures show ('MNIST' source labels where recorded)
  model: int  # the model continued
  start_loss: float  # test loss of that model
  sample_loss: np.ndarray  # (E,) test loss of each sample
  average_loss: np.ndarray  # (E,) test loss of the running average after each sample
  alphas: np.ndarray  # (A,)
  samples: dict  # curves between every pair of samples (a barrier.json-style entry)


def swa_zoo(directory, model: Optional[int] = None, epochs: int = 10, lr: float = 0.05,
            seed: int = 0, data_dir="data") -> SwaResult:
  """Runs SWA from `model` (default: drawn from `seed` among the usable models) of the zoo
  in `directory`; writes swa.json there and returns the result."""
  if epochs < 2:
    raise LmcError(f"--epochs must be >= 2 to have pairs of samples, got {epochs}.")
  directory = Path(directory)
  config, net, params, doc = load_zoo_checked(directory)
  usable = usable_models(doc, directory)
  k = model if model is not None else int(np.random.default_rng(seed).choice(usable))
  if k not in usable:
    raise LmcError(f"--model={k} is not a usable model of {directory}; pick one of {usable[:10]}.")
  data = load_dataset(config, data_dir)
  run = swa(config, data, take(params, k), jax.random.key(seed), epochs, lr)
  curves = pair_sweep(net, run.samples, all_pairs(epochs), data.x_test, data.y_test)
  entry = curves_entry(curves)
  atomic_write_json(directory / SWA_JSON, {
      "format": SWA_FORMAT, "model": k, "epochs": epochs, "lr": lr, "seed": seed,
      "start_loss": run.start_loss,
      "sample_loss": run.sample_loss.tolist(), "average_loss": run.average_loss.tolist(),
      "alphas": curves.alphas.tolist(), "samples": entry, "versions": package_versions()})
  return SwaResult(config.model.hidden[0], config.data.dataset,
                   doc.get("data_source") or config.data.dataset, k,
                   run.start_loss, np.asarray(run.sample_loss), np.asarray(run.average_loss),
                   np.asarray(curves.alphas), entry)
