"""Feature redundancy (the study's section 5.1, E5) for one-hidden-layer Moons zoos.

  python -m experiments.redundancy                 # every one-layer zoo under runs/

For each zoo: merge hidden units whose cosine similarity exceeds --threshold (exactly
function-preserving for proportional units), zero-pad to a common width, and measure the
reduced nets: width after merging and test accuracy (Table 5.1, the study's numbers
beside), epsilon naive and after re-alignment (Fig 5.3). Also the clustered cosine
matrices of hidden units (Fig 5.2) and decision boundaries with every unit's line for a
pair and its average at widths 4 and 512 (Fig 5.1). Expected: merging shrinks wide nets
by about half; once merged, naive averages lose their low loss while re-aligned ones keep it.
"""
from __future__ import annotations

from pathlib import Path

import jax
from absl import flags, logging

from lmc_jax import result_files
from lmc_jax.analysis.redundancy import original_epsilon, redundancy_row
from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.models import is_one_hidden_layer_mlp
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import redundancy_figures
from lmc_jax.report.tables import format_table, write_csv
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import read_zoo_json
from lmc_jax.zoo.runs import find_zoos

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories (default: every one-layer zoo under --runs).")
flags.DEFINE_string("runs", "runs", "Where to look for zoos when --zoo is not given.")
flags.DEFINE_float("threshold", 0.99, "Merge units whose cosine similarity exceeds this.",
                   lower_bound=-1.0, upper_bound=1.0)
flags.DEFINE_integer("reference", 0, "Model the merged nets are re-aligned to.", lower_bound=0)
flags.DEFINE_string("figures", None, "Where figures and the table go (default <runs>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")
BOUNDARY_WIDTHS = (4, 512)  # Fig 5.1: a narrow and a wide net


def one_layer_moons(zoos) -> dict:
  """{directory: its zoo.json's record} of the zoos among `zoos` that are Moons zoos of the
  MLP with one hidden layer."""
  keep = {}
  for z in zoos:
    record = read_zoo_json(z)
    config = record.config
    if config.data.dataset == "moons" and is_one_hidden_layer_mlp(model_for(config)):
      keep[z] = record
  return keep


@exit_on_lmc_error
def main(argv):
  del argv
  found = ({Path(z): read_zoo_json(z) for z in FLAGS.zoo} if FLAGS.zoo
           else one_layer_moons(find_zoos(FLAGS.runs)))
  zoos = list(found)
  if not zoos:
    raise LmcError(f"No one-hidden-layer Moons zoo under {FLAGS.runs}; train them with "
                   "`python -m experiments.zoo --width=4,8,...` or pass --zoo.")
  fig_dir = Path(FLAGS.figures or (zoos[0].parent / "figures"))
  check_output_dir(fig_dir, "--figures")
  for z in zoos:  # before any work: redundancy.json goes into each zoo, beside its barrier.json
    original_epsilon(z, found[z].num_models, found[z].params_sha256)
    check_output_dir(z, "--zoo" if FLAGS.zoo else "--runs")
  results = []
  for z in zoos:
    logging.info("%s: merging units with cosine similarity > %s", z, FLAGS.threshold)
    with held_zoo(z, "redundancy analysis", found[z]) as zoo:  # the lock, then the zoo
      results.append(redundancy_row(zoo, FLAGS.threshold, FLAGS.reference, FLAGS.data_dir))
  results.sort(key=lambda r: r.row["width"])
  rows = [r.row for r in results]
  print(f"Moons, units merged at cosine similarity > {FLAGS.threshold} (Table 5.1, study beside)")
  print(format_table(rows, list(rows[0]), ["width", "merged width", "study", "acc before",
                                           "acc after", "study", "eps naive", "eps re-aligned"]))
  write_csv(fig_dir / result_files.redundancy_table_csv("moons"), rows)
  paths = [redundancy_figures.reduced_epsilon(
               results, fig_dir / result_files.redundancy_epsilon_png("moons"),
               "Moons: epsilon of nets with redundant units merged"),
           redundancy_figures.cosine_matrices(
               [(f"width {r.row['width']}, model {r.models[0]}", r.first) for r in results],
               fig_dir / result_files.unit_cosine_png("moons"),
               "Moons: cosine similarity of hidden units, clustered")]
  boundary = [r for r in results if r.row["width"] in BOUNDARY_WIDTHS]
  if boundary:
    data = load_dataset(boundary[0].config, FLAGS.data_dir)
    average = lambda a, b: jax.tree_util.tree_map(lambda u, v: 0.5 * (u + v), a, b)
    rows = [(f"width {r.row['width']}", [(f"model {r.models[0]}", r.first),
                                         (f"model {r.models[1]}", r.second),
                                         ("their average", average(r.first, r.second))])
            for r in boundary]
    paths.append(redundancy_figures.decision_boundaries(
        rows, data.x_train, data.y_train,
        fig_dir / result_files.decision_boundaries_png("moons"), "Moons"))
  print("figures: " + ", ".join(str(p) for p in paths))


def run():
  """Console script `lmc-redundancy`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
