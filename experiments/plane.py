"""Loss on the plane through three networks of a zoo, before and after aligning two of
them to the third (the study's Fig 1.1 and 1.2).

  python -m experiments.plane --zoo=runs/moons_w8 --models=0,1,2

Writes <zoo>/plane.json (grid coordinates, test loss and accuracy, the three networks'
coordinates and losses) and <zoo>/plane.png. Expected: before alignment three isolated
low-loss regions; after weight matching B and C to A, one connected low-loss region.
"""
from __future__ import annotations

from pathlib import Path

import jax
from absl import app, flags

from experiments.common import exit_on_lmc_error, int_list
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.report import figures
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.lmc.loss_plane import plane_grid
from lmc_jax.align.spec import apply_permutation, spec_for_config
from lmc_jax.align.weight import weight_matching
from lmc_jax.zoo.io import load_zoo_checked, package_versions, usable_models

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo", None, "Zoo directory.", required=True)
flags.DEFINE_list("models", ["0", "1", "2"], "Models A,B,C; B and C are aligned to A.")
flags.DEFINE_integer("resolution", 31, "Grid points per side.")
flags.DEFINE_float("margin", 0.25, "Border around the three networks, as a fraction of their extent.")
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps.")
flags.DEFINE_integer("seed", 0, "Seed of the weight-matching layer orders.")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")


def grid_json(g):
  return {"xs": g.xs.tolist(), "ys": g.ys.tolist(), "loss": g.loss.tolist(), "acc": g.acc.tolist(),
          "corners": g.corners.tolist(), "corner_loss": g.corner_loss.tolist()}


@exit_on_lmc_error
def main(argv):
  del argv
  zoo = Path(FLAGS.zoo)
  config, model, params, doc = load_zoo_checked(zoo)
  ids = int_list(FLAGS.models, "models")
  usable = usable_models(doc, zoo)
  if len(ids) != 3 or len(set(ids)) != 3 or not set(ids) <= set(usable):
    raise LmcError(f"--models must name three different usable models of {zoo}, got "
                   f"{FLAGS.models} (usable: {usable[:10]}{'...' if len(usable) > 10 else ''}).")
  if FLAGS.resolution < 2:
    raise LmcError(f"--resolution must be >= 2, got {FLAGS.resolution}.")
  data = load_dataset(config, FLAGS.data_dir)
  take = lambda k: jax.tree_util.tree_map(lambda v: v[k], params)
  a, b, c = (take(k) for k in ids)
  spec = spec_for_config(config)
  key = jax.random.key(FLAGS.seed)
  b_al = apply_permutation(spec, weight_matching(key, spec, a, b, FLAGS.max_iter).perm, b)
  c_al = apply_permutation(spec, weight_matching(key, spec, a, c, FLAGS.max_iter).perm, c)
  grids = [plane_grid(model, a, b, c, data.x_test, data.y_test, FLAGS.resolution, FLAGS.margin),
           plane_grid(model, a, b_al, c_al, data.x_test, data.y_test, FLAGS.resolution, FLAGS.margin)]
  name = doc.get("data_source") or config.dataset
  atomic_write_json(zoo / "plane.json", {"models": ids, "split": "test", "naive": grid_json(grids[0]),
                                         "aligned": grid_json(grids[1]), "versions": package_versions()})
  path = figures.loss_planes(
      grids, ["naive", "B, C weight-matched to A"],
      f"{name}, width {config.hidden[0]}: test loss on the plane through models "
      f"A={ids[0]}, B={ids[1]}, C={ids[2]}", zoo / "plane.png")
  for label, g in zip(("naive", "aligned"), grids):
    print(f"{label}: losses at A, B, C {g.corner_loss.round(4).tolist()}; grid min "
          f"{g.loss.min():.4f}, max {g.loss.max():.4f}")
  print(f"wrote {zoo / 'plane.json'} and {path}")


if __name__ == "__main__":
  app.run(main)
