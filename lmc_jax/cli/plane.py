"""Loss on the plane through three networks of a zoo, before and after aligning two of
them to the third (the study's Fig 1.1 and 1.2).

  python -m experiments.plane --zoo=runs/moons_w8 --models=0,1,2

Writes <zoo>/plane.json (grid coordinates, test loss and accuracy, the three networks'
coordinates and losses) and <zoo>/plane.png. Expected: before alignment three isolated
low-loss regions; after weight matching B and C to A, one connected low-loss region.
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from lmc_jax.analysis.plane import plane_zoo
from lmc_jax.cli.common import exit_on_lmc_error, int_list, run_main
from lmc_jax.config import PRECISIONS
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import figures
from lmc_jax.result_files import PLANE_JSON, PLANE_PNG
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import read_zoo_json

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo", None, "Zoo directory.", required=True)
flags.DEFINE_list("models", ["0", "1", "2"], "Models A,B,C; B and C are aligned to A.")
flags.DEFINE_integer("resolution", 31, "Grid points per side.", lower_bound=2)
flags.DEFINE_float("margin", 0.25, "Border around the three networks, as a fraction of their "
                   "extent.", lower_bound=0.0)
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the weight-matching layer orders.", lower_bound=0)
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")
flags.DEFINE_enum("precision", "fp32", PRECISIONS, "Matmuls of the grid: fp32, or bf16 (bfloat16 "
                  "inputs, float32 accumulation and everything else; MLPs only).")


@exit_on_lmc_error
def main(argv):
  del argv
  zoo = Path(FLAGS.zoo)
  record = read_zoo_json(zoo)  # before any work: whole, and plane.json and plane.png go in it
  check_output_dir(zoo, "--zoo")
  with held_zoo(zoo, "loss-plane analysis", record) as handle:  # the lock, then the zoo
    res = plane_zoo(handle, int_list(FLAGS.models, "models"), FLAGS.resolution, FLAGS.margin,
                    FLAGS.max_iter, FLAGS.seed, FLAGS.data_dir, FLAGS.precision)
  a, b, c = res.models
  path = figures.loss_planes(
      [res.naive, res.aligned], ["naive", "B, C weight-matched to A"],
      f"{res.data_name}, width {res.width}: test loss on the plane through models "
      f"A={a}, B={b}, C={c}", zoo / PLANE_PNG)
  for label, g in (("naive", res.naive), ("aligned", res.aligned)):
    finite, bad = figures.finite_values(g.loss)
    span = f"grid min {finite.min():.4f}, max {finite.max():.4f}" if finite.size else "grid"
    print(f"{label}: losses at A, B, C {g.corner_loss.round(4).tolist()}; {span}"
          + (f" ({bad} non-finite points)" if bad else ""))
  print(f"wrote {zoo / PLANE_JSON} and {path}")


def run():
  """Console script `lmc-plane`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
