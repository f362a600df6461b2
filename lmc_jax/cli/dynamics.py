r"""Training dynamics (the study's E6, E7, and E8's matrices): zoos of one architecture
trained with different inits and optimizers, compared as one labelled zoo.

  python -m experiments.zoo --width=512 --num_models=10 --init=kaiming_normal --optimizer=adamw
  ...  (one zoo per init x optimizer)
  python -m experiments.dynamics \
      --zoo=runs/moons_kaiming_normal_w512,runs/moons_kaiming_normal_rmsprop_w512,...

Prints Table 5.2 (test loss and accuracy per group) and the median epsilon within and
across groups; writes <figures>/<name>_dynamics.json and a figure of pairwise epsilon
matrices with group bands: naive, all aligned to the best model, to the best of each
group (E7), and each pair aligned directly. Expected (Moons width 512): AdamW nets are
more connected among themselves than RMSprop nets; the conclusion holds whichever
reference is used.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from absl import flags

from lmc_jax.analysis.groups import compare_groups
from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import figures
from lmc_jax.report.tables import format_table
from lmc_jax.result_files import epsilon_groups_png
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import read_zoo_json

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories, one per group (same architecture).", required=True)
flags.DEFINE_string("name", None, "Name of the comparison (default: the first zoo's dataset).")
flags.DEFINE_bool("pairwise", True, "Also align every pair directly (slower: one matching per "
                  "pair).")
flags.DEFINE_integer("seed", 0, "Seed of the weight-matching layer orders.", lower_bound=0)
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps.", lower_bound=1)
flags.DEFINE_string("figures", None, "Output folder (default <parent of first zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")


@exit_on_lmc_error
def main(argv):
  del argv
  out = Path(FLAGS.figures or Path(FLAGS.zoo[0]).parent / "figures")
  check_output_dir(out, "--figures")
  found = {z: read_zoo_json(z) for z in FLAGS.zoo}  # every zoo whole before any work
  with contextlib.ExitStack() as held:  # every zoo's lock, then the zoos
    zoos = [held.enter_context(held_zoo(z, "dynamics analysis", record))
            for z, record in found.items()]
    res = compare_groups(zoos, FLAGS.name, out, FLAGS.seed, FLAGS.max_iter, FLAGS.pairwise,
                         FLAGS.data_dir)
  zoo, rec, name = res.zoo, res.record, res.name
  best = rec.references["best"]
  print(f"{name}: test metrics per group (as Tables 5.2, 5.3) and median epsilon after aligning "
        f"all to the best model {best} ({zoo.origin[best][0]} #{zoo.origin[best][1]})")
  print(format_table(res.rows, list(res.rows[0]), ["group", "models", "test loss", "test acc",
                                                   "eps within", "eps across"]))
  panels = [("naive", rec.matrix("naive"), None),
            ("aligned to the best model", rec.matrix("best"), best)]
  panels += [(f"aligned to best of\n{k[8:]}", rec.matrix(k), rec.references[k])
             for k in rec.star_alignments if k.startswith("best_of_")]
  if "pairwise" in rec.epsilon:
    panels.append(("each pair aligned directly", rec.matrix("pairwise"), None))
  path = figures.grouped_matrices(panels, zoo.groups, zoo.labels, float(np.mean(zoo.test_loss)),
                                  out / epsilon_groups_png(name),
                                  f"{name}: pairwise epsilon by group (colour max = mean test "
                                  "loss)")
  print(f"wrote {res.path} and {path}")


def run():
  """Console script `lmc-dynamics`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
