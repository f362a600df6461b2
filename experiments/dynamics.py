"""Training dynamics (the study's E6, E7, and E8's matrices): zoos of one architecture
trained with different inits and optimizers, compared as one labelled zoo.

  python -m experiments.zoo --width=512 --num_models=10 --init=kaiming_normal --optimizer=adamw
  ...  (one zoo per init x optimizer)
  python -m experiments.dynamics --zoo=runs/moons_kaiming_normal_w512,runs/moons_kaiming_normal_rmsprop_w512,...

Prints Table 5.2 (test loss and accuracy per group) and the median epsilon within and
across groups; writes <figures>/<name>_dynamics.json and a figure of pairwise epsilon
matrices with group bands: naive, all aligned to the best model, to the best of each
group (E7), and each pair aligned directly. Expected (Moons width 512): AdamW nets are
more connected among themselves than RMSprop nets; the conclusion holds whichever
reference is used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags

from experiments.common import exit_on_lmc_error
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.report import figures
from lmc_jax.errors import LmcError
from lmc_jax.report.tables import format_table, mean_std
from lmc_jax.analysis.groups import combine_zoos, group_epsilon_matrices
from lmc_jax.zoo.io import package_versions

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories, one per group (same architecture).", required=True)
flags.DEFINE_string("name", None, "Name of the comparison (default: the first zoo's dataset).")
flags.DEFINE_bool("pairwise", True, "Also align every pair directly (slower: one matching per pair).")
flags.DEFINE_integer("seed", 0, "Seed of the weight-matching layer orders.")
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps.")
flags.DEFINE_string("figures", None, "Output folder (default <parent of first zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")


def within_across(m, groups, g):
  inside = groups == g
  w = m[np.ix_(inside, inside)][np.triu_indices(inside.sum(), 1)]
  a = m[np.ix_(inside, ~inside)].ravel()
  med = lambda v: float(np.median(v)) if v.size else float("nan")
  return med(w), med(a)


@exit_on_lmc_error
def main(argv):
  del argv
  if len(FLAGS.zoo) < 2:
    raise LmcError("--zoo needs at least two zoos (one per configuration) to compare.")
  zoo = combine_zoos([Path(z) for z in FLAGS.zoo])
  name = FLAGS.name or f"{zoo.config.dataset}_w{zoo.config.hidden[0]}"
  out = Path(FLAGS.figures or Path(FLAGS.zoo[0]).parent / "figures")
  mats = group_epsilon_matrices(zoo, FLAGS.seed, FLAGS.max_iter, FLAGS.pairwise, FLAGS.data_dir)
  refs = mats.pop("references")
  rows = []
  for g, label in enumerate(zoo.labels):
    sel = zoo.groups == g
    row = {"group": label, "models": int(sel.sum()), "test_loss": mean_std(zoo.test_loss[sel]),
           "test_acc": mean_std(zoo.test_acc[sel])}
    row["eps_within"], row["eps_across"] = within_across(mats["best"], zoo.groups, g)
    rows.append(row)
  print(f"{name}: test metrics per group (as Tables 5.2, 5.3) and median epsilon after aligning all to "
        f"the best model {refs['best']} ({zoo.origin[refs['best']][0]} #{zoo.origin[refs['best']][1]})")
  print(format_table(rows, list(rows[0]), ["group", "models", "test loss", "test acc",
                                           "eps within", "eps across"]))
  atomic_write_json(out / f"{name}_dynamics.json", {
      "zoos": FLAGS.zoo, "labels": zoo.labels, "groups": zoo.groups.tolist(),
      "origin": zoo.origin, "references": refs, "table": rows,
      "epsilon": {k: v.tolist() for k, v in mats.items()}, "versions": package_versions()})
  panels = [("naive", mats["naive"], None), ("aligned to the best model", mats["best"], refs["best"])]
  panels += [(f"aligned to best of {k[8:]}", mats[k], refs[k]) for k in mats if k.startswith("best_of_")]
  if "pairwise" in mats:
    panels.append(("each pair aligned directly", mats["pairwise"], None))
  path = figures.grouped_matrices(panels, zoo.groups, zoo.labels, float(np.mean(zoo.test_loss)),
                                  out / f"{name}_epsilon_groups.png",
                                  f"{name}: pairwise epsilon by group (colour max = mean test loss)")
  print(f"wrote {out / f'{name}_dynamics.json'} and {path}")


if __name__ == "__main__":
  app.run(main)
