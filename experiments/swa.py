"""Stochastic weight averaging on trained zoos (the study's E4, Fig 4.7 and 4.8).

  python -m experiments.swa --zoo=runs/mnist_w8,runs/mnist_w16,runs/mnist_w64

For one model of each zoo: --epochs more epochs at the constant --lr (the study: 10 at
0.05), the weights after each epoch kept as samples. Writes <zoo>/swa.json (sample and
running-average test losses, and the loss along the line between every pair of samples)
and two figures. Expected: the running average beats every sample except in narrow nets,
and pairwise averages of samples beat the samples (epsilon near or below zero).
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from experiments.common import exit_on_lmc_error
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.report import figures
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.interpolation import all_pairs, pair_sweep
from lmc_jax.lmc.measures import curves_entry, quartiles
from lmc_jax.report.tables import format_table
from lmc_jax.zoo.swa import swa
from lmc_jax.zoo.io import load_zoo_checked, package_versions, usable_models

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories.", required=True)
flags.DEFINE_integer("model", None, "Model to continue (default: drawn from --seed among the usable).")
flags.DEFINE_integer("epochs", 10, "SWA epochs (samples).")
flags.DEFINE_float("lr", 0.05, "Constant learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of the model choice and the data order.")
flags.DEFINE_string("figures", None, "Where figures go (default <parent of first zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")


@exit_on_lmc_error
def main(argv):
  del argv
  if FLAGS.epochs < 2:
    raise LmcError(f"--epochs must be >= 2 to have pairs of samples, got {FLAGS.epochs}.")
  zoos = [Path(z) for z in FLAGS.zoo]
  fig_dir = Path(FLAGS.figures or zoos[0].parent / "figures")
  records, rows, name = [], [], None
  for z in zoos:
    config, model, params, doc = load_zoo_checked(z)
    usable = usable_models(doc, z)
    rng = np.random.default_rng(FLAGS.seed)
    k = FLAGS.model if FLAGS.model is not None else int(rng.choice(usable))
    if k not in usable:
      raise LmcError(f"--model={k} is not a usable model of {z}; pick one of {usable[:10]}.")
    data = load_dataset(config, FLAGS.data_dir)
    run = swa(config, data, jax.tree_util.tree_map(lambda v: v[k], params),
              jax.random.key(FLAGS.seed), FLAGS.epochs, FLAGS.lr)
    curves = pair_sweep(model, run.samples, all_pairs(FLAGS.epochs), data.x_test, data.y_test)
    entry = curves_entry(curves)
    atomic_write_json(z / "swa.json", {
        "model": k, "epochs": FLAGS.epochs, "lr": FLAGS.lr, "seed": FLAGS.seed,
        "start_loss": run.start_loss, "sample_loss": run.sample_loss.tolist(),
        "average_loss": run.average_loss.tolist(), "alphas": curves.alphas.tolist(),
        "samples": entry, "versions": package_versions()})
    name = doc.get("data_source") or config.dataset
    records.append({"width": config.hidden[0], "sample_loss": run.sample_loss,
                    "average_loss": run.average_loss, "start_loss": run.start_loss,
                    "alphas": curves.alphas, "naive": entry})
    eps = quartiles(entry["epsilon"])
    rows.append({"width": config.hidden[0], "model": k, "start": run.start_loss,
                 "best_sample": float(run.sample_loss.min()), "average": float(run.average_loss[-1]),
                 "eps_median": eps["median"]})
  records.sort(key=lambda r: r["width"])
  rows.sort(key=lambda r: r["width"])
  print(f"{name}: SWA, {FLAGS.epochs} epochs at lr {FLAGS.lr} (test loss)")
  print(format_table(rows, list(rows[0]), ["width", "model", "start", "best sample",
                                           "final average", "median eps (samples)"]))
  paths = [figures.swa_losses(records, name, fig_dir / f"{config.dataset}_swa_losses.png"),
           figures.loss_curves(records, f"{name} SWA samples", "naive",
                               fig_dir / f"{config.dataset}_swa_curves.png")]
  print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
  app.run(main)
