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

import json
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

from experiments.common import exit_on_lmc_error
from lmc_jax.report import redundancy_figures
from lmc_jax.analysis.barrier import BARRIER_JSON
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.analysis.redundancy import analyse_redundancy
from lmc_jax.report.tables import find_zoos, format_table, write_csv
from lmc_jax.report.study_numbers import MOONS_TABLE_5_1
from lmc_jax.zoo.io import load_zoo_checked, read_zoo_json

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories (default: every one-layer zoo under --runs).")
flags.DEFINE_string("runs", "runs", "Where to look for zoos when --zoo is not given.")
flags.DEFINE_float("threshold", 0.99, "Merge units whose cosine similarity exceeds this.")
flags.DEFINE_integer("reference", 0, "Model the merged nets are re-aligned to.")
flags.DEFINE_string("figures", None, "Where figures and the table go (default <runs>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")



def one_layer_moons(zoos):
  keep = []
  for z in zoos:
    c = read_zoo_json(z)["config"]
    if c["dataset"] == "moons" and len(c["hidden"]) == 1 and c["layernorm"] == "none":
      keep.append(z)
  return keep


@exit_on_lmc_error
def main(argv):
  del argv
  zoos = [Path(z) for z in FLAGS.zoo] if FLAGS.zoo else one_layer_moons(find_zoos(FLAGS.runs))
  if not zoos:
    raise LmcError(f"No one-hidden-layer Moons zoo under {FLAGS.runs}; train them with "
                   "`python -m experiments.zoo --width=4,8,...` or pass --zoo.")
  fig_dir = Path(FLAGS.figures or (zoos[0].parent / "figures"))
  records, rows, boundary_rows, cos_nets = [], [], [], []
  for z in zoos:
    logging.info("%s: merging units with cosine similarity > %s", z, FLAGS.threshold)
    res = analyse_redundancy(z, FLAGS.threshold, FLAGS.reference, data_dir=FLAGS.data_dir)
    doc = read_zoo_json(z)
    w, ok = res["width"], res["models"]
    orig = json.loads((z / BARRIER_JSON).read_text())["naive"]["epsilon"] \
        if (z / BARRIER_JSON).exists() else []
    records.append({"width": w, "orig_naive": orig, "red_naive": res["naive"]["epsilon"],
                    "red_aligned": res["aligned"]["epsilon"]})
    study = MOONS_TABLE_5_1.get(w, (float("nan"), float("nan")))
    rows.append({
        "width": w, "merged_width": float(np.mean([res["reduced_width"][k] for k in ok])),
        "study_merged_width": study[0],
        "test_acc_before": float(np.mean([doc["models"][k]["test_acc"] for k in ok])),
        "test_acc_after": float(np.mean([res["reduced_test_acc"][k] for k in ok])),
        "study_test_acc_after": study[1],
        "eps_naive_median": float(np.median(res["naive"]["epsilon"])),
        "eps_aligned_median": float(np.median(res["aligned"]["epsilon"]))})
    config, _, params, _ = load_zoo_checked(z)
    take = lambda k: jax.tree_util.tree_map(lambda v: np.asarray(v[k]), params)
    cos_nets.append((f"width {w}, model {ok[0]}", take(ok[0])))
    if w in (4, 512) and len(ok) >= 2:
      a, b = take(ok[0]), take(ok[1])
      avg = jax.tree_util.tree_map(lambda u, v: 0.5 * (u + v), a, b)
      boundary_rows.append((f"width {w}", [(f"model {ok[0]}", a), (f"model {ok[1]}", b),
                                           ("their average", avg)]))
      data = load_dataset(config, FLAGS.data_dir)
  rows.sort(key=lambda r: r["width"])
  records.sort(key=lambda r: r["width"])
  print(f"Moons, units merged at cosine similarity > {FLAGS.threshold} (Table 5.1, study beside)")
  print(format_table(rows, list(rows[0]), ["width", "merged width", "study", "acc before",
                                           "acc after", "study", "eps naive", "eps re-aligned"]))
  write_csv(fig_dir / "moons_redundancy_table.csv", rows)
  paths = [redundancy_figures.reduced_epsilon(records, fig_dir / "moons_redundancy_epsilon.png",
                                              "Moons: epsilon of nets with redundant units merged"),
           redundancy_figures.cosine_matrices(cos_nets, fig_dir / "moons_unit_cosine.png",
                                              "Moons: cosine similarity of hidden units, clustered")]
  if boundary_rows:
    paths.append(redundancy_figures.decision_boundaries(
        boundary_rows, data.x_train, data.y_train, fig_dir / "moons_decision_boundaries.png",
        "Moons"))
  print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
  app.run(main)
