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

from absl import flags

from lmc_jax import result_files
from lmc_jax.analysis.swa import swa_zoo
from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.data.datasets import dataset_slug
from lmc_jax.execution import plan_from_environment
from lmc_jax.lmc.measures import quartiles
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import figures
from lmc_jax.report.tables import format_table
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import read_zoo_json

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories.", required=True)
flags.DEFINE_integer("model", None, "Model to continue (default: drawn from --seed among the "
                     "usable).", lower_bound=0)
flags.DEFINE_integer("epochs", 10, "SWA epochs (samples).", lower_bound=1)
flags.DEFINE_float("lr", 0.05, "Constant learning rate.")
flags.register_validator("lr", lambda lr: lr > 0, "--lr must be > 0")
flags.DEFINE_integer("seed", 0, "Seed of the model choice and the data order.", lower_bound=0)
flags.DEFINE_string("figures", None, "Where figures go (default <parent of first zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")


def _finite_min(values) -> float:
  """The smallest finite value (NaN if none): a diverged sample is not the best one."""
  v, _ = figures.finite_values(values)
  return float(v.min()) if v.size else float("nan")


@exit_on_lmc_error
def main(argv):
  del argv
  zoos = [Path(z) for z in FLAGS.zoo]
  fig_dir = Path(FLAGS.figures or zoos[0].parent / "figures")
  check_output_dir(fig_dir, "--figures")
  found = {}
  for z in zoos:  # checks every zoo before any work; swa.json is written into it
    found[z] = read_zoo_json(z)
    check_output_dir(z, "--zoo")
  plan = plan_from_environment()
  results = []
  for z in zoos:
    with held_zoo(z, "SWA analysis", found[z]) as zoo:  # the lock, then the zoo
      results.append(swa_zoo(zoo, FLAGS.model, FLAGS.epochs, FLAGS.lr, FLAGS.seed,
                             FLAGS.data_dir, plan))
  results.sort(key=lambda r: r.width)
  rows = [{"width": r.width, "model": r.swa.model, "start": r.swa.start_loss,
           "best_sample": _finite_min(r.swa.sample_loss),
           "average": float(r.swa.average_loss[-1]),
           "eps_median": quartiles(r.swa.samples.epsilon)["median"]} for r in results]
  name, dataset = results[-1].data_name, dataset_slug(results[-1].dataset)
  print(f"{name}: SWA, {FLAGS.epochs} epochs at lr {FLAGS.lr} (test loss)")
  print(format_table(rows, list(rows[0]), ["width", "model", "start", "best sample",
                                           "final average", "median eps (samples)"]))
  panels = [figures.CurvePanel(f"width {r.width}", r.swa.alphas, r.swa.samples.loss)
            for r in results]
  paths = [figures.swa_losses(results, name, fig_dir / result_files.swa_losses_png(dataset)),
           figures.loss_curves(panels, f"{name} SWA samples: test loss along the line between "
                               "every pair, naive interpolation",
                               fig_dir / result_files.swa_curves_png(dataset))]
  print("figures: " + ", ".join(str(p) for p in paths))


def run():
  """Console script `lmc-swa`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
