"""Linear mode connectivity of trained zoos: naive, and after alignment.

  python -m experiments.barrier                      # every zoo under runs/
  python -m experiments.barrier --zoo=runs/moons_w8,runs/moons_w512
  python -m experiments.barrier --align=weight,activation,ste,sinkhorn,mergemany,exact --repair

For each zoo: the test loss at 11 points on the line between every pair, before and after
aligning every model to --reference by weight matching, written to <zoo>/barrier.json
(epsilon, the loss barrier of the study's Definition 5 and Git Re-Basin's barrier, per
pair). Across the zoos of a dataset: the study's figures (Fig 4.1/4.4/4.5 epsilon against
width, Fig 4.2 loss curves, Fig 4.6 clustered epsilon matrices) and a summary table,
printed and written as CSV. Expected on Moons: median aligned epsilon below naive at
every width >= 4, and naive epsilon falling as width grows.

With several --align methods (each an entry of barrier.json's "methods", keyed by name;
weight matching always runs) it also prints and writes the comparison of the methods:
median epsilon and quartiles per width, seconds, how often each reaches the exact optimum
(narrow nets), and epsilon of pairs with and without the reference.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from experiments.common import exit_on_lmc_error
from lmc_jax.report import figures
from lmc_jax.analysis.comparison import (COMPARISON_COLUMNS, COMPARISON_HEADERS,
                                          DIAGNOSTIC_COLUMNS, DIAGNOSTIC_HEADERS, comparison_figure,
                                          comparison_rows, diagnostics_rows)
from lmc_jax.align.registry import METHODS, MethodSettings, check_methods
from lmc_jax.analysis.barrier import analyse_zoo
from lmc_jax.config import ZooConfig
from lmc_jax.errors import LmcError
from lmc_jax.report.tables import epsilon_row, find_zoos, format_table, write_csv
from lmc_jax.zoo.runs import zoo_family
from lmc_jax.zoo.io import read_zoo_json, usable_models

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories, comma-separated (default: every zoo under --runs).")
flags.DEFINE_string("runs", "runs", "Where to look for zoos when --zoo is not given.")
flags.DEFINE_integer("reference", 0, "Model every other model is aligned to.")
flags.DEFINE_list("align", ["weight"], f"Alignment methods, comma-separated: "
                  f"{', '.join(METHODS)} (weight always runs).")
flags.DEFINE_bool("repair", False, "Also measure every line after REPAIR (renormalised hidden "
                  "units), as entries '<method>+repair'.")
flags.DEFINE_bool("diagnostics", False, "Also record cycle consistency of weight and activation "
                  "matching and the spread of weight matching over 5 layer orders.")
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps over the hidden layers.")
flags.DEFINE_integer("seed", 0, "Seed of layer orders, batches and alphas of the methods.")
flags.DEFINE_integer("fit_samples", 2048, "Training inputs for activation matching, STE, "
                     "Sinkhorn and REPAIR statistics.")
flags.DEFINE_integer("ste_steps", 50, "Straight-through estimator steps (batches of 256).")
flags.DEFINE_float("ste_lr", 0.1, "Straight-through estimator Adam learning rate.")
flags.DEFINE_integer("sinkhorn_steps", 50, "Sinkhorn matching steps (batches of 256).")
flags.DEFINE_float("sinkhorn_lr", 1.0, "Sinkhorn matching Adam learning rate (on the logits).")
flags.DEFINE_enum("sinkhorn_objective", "expected", ["expected", "midpoint"], "Sinkhorn loss: "
                  "at a random alpha each step (expected) or at alpha 1/2.")
flags.DEFINE_integer("mergemany_rounds", 100, "Most MergeMany rounds over all models.")
flags.DEFINE_float("exact_max_tflop", 1.0, "Exact search refuses (and is skipped) where one pair "
                   "would need more TFLOP than this (1: about a minute on 2 CPU cores).")
flags.DEFINE_enum("split", "test", ["test", "train"], "Split the loss is measured on.")
flags.DEFINE_enum("matcher", "host", ["host", "device"], "Weight matching one model at a time "
                  "with scipy (host), or all models at once with a jitted solver (device, float32).")
flags.DEFINE_string("figures", None, "Where figures and summary CSVs go (default: "
                    "<runs>/figures, or <parent of the first --zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live (see experiments.fetch).")
flags.DEFINE_bool("recompute", False, "Recompute barrier.json even where a current one exists.")

COLUMNS = ["width", "pairs", "naive_epsilon_q1", "naive_epsilon_median", "naive_epsilon_q3",
           "aligned_epsilon_q1", "aligned_epsilon_median", "aligned_epsilon_q3"]
HEADERS = ["width", "pairs", "naive Q1", "naive median", "naive Q3",
           "aligned Q1", "aligned median", "aligned Q3"]


def barrier_for(directory: Path) -> dict:
  """barrier.json of a zoo; entries with these settings already there are kept."""
  settings = MethodSettings(
      seed=FLAGS.seed, max_iter=FLAGS.max_iter, matcher=FLAGS.matcher,
      fit_samples=FLAGS.fit_samples, ste_steps=FLAGS.ste_steps, ste_lr=FLAGS.ste_lr,
      sinkhorn_steps=FLAGS.sinkhorn_steps, sinkhorn_lr=FLAGS.sinkhorn_lr,
      sinkhorn_objective=FLAGS.sinkhorn_objective, mergemany_rounds=FLAGS.mergemany_rounds,
      exact_max_tflop=FLAGS.exact_max_tflop)
  logging.info("%s: interpolating every pair, naive and aligned by %s", directory,
               ",".join(FLAGS.align))
  return analyse_zoo(directory, FLAGS.reference, FLAGS.split, data_dir=FLAGS.data_dir,
                     methods=FLAGS.align, repair=FLAGS.repair, diagnostics=FLAGS.diagnostics,
                     settings=settings, recompute=FLAGS.recompute)


def record(directory: Path, doc: dict, result: dict) -> dict:
  models = usable_models(doc, directory)
  return {"width": doc["config"]["hidden"][0], "data_source": doc.get("data_source", ""),
          "naive": result["naive"],
          "aligned": result["aligned"], "alphas": result["alphas"], "models": models,
          "methods": result.get("methods", {}), "diagnostics": result.get("diagnostics"),
          "reference": result["aligned"]["reference"],
          "mean_test_loss": float(np.mean([doc["models"][k]["test_loss"] for k in models]))}


@exit_on_lmc_error
def main(argv):
  del argv
  if FLAGS.zoo:
    zoos = [Path(z) for z in FLAGS.zoo]
    fig_dir = Path(FLAGS.figures or zoos[0].parent / "figures")
  else:
    zoos = find_zoos(FLAGS.runs)
    if not zoos:
      raise LmcError(f"No zoo found under {FLAGS.runs}; train one with `python -m experiments.zoo` "
                     "or pass --zoo.")
    fig_dir = Path(FLAGS.figures or Path(FLAGS.runs) / "figures")
  check_methods(FLAGS.align)
  docs = [read_zoo_json(z) for z in zoos]  # checks every zoo before any work
  groups = {}
  for directory, doc in zip(zoos, docs):
    result = barrier_for(directory)
    cfg = dict(doc["config"])
    cfg.pop("hidden")
    key = json.dumps(cfg, sort_keys=True)
    groups.setdefault(key, []).append(record(directory, doc, result))

  labels = set()
  for key, recs in groups.items():
    recs.sort(key=lambda r: r["width"])
    config = ZooConfig.from_dict(dict(json.loads(key), hidden=[recs[0]["width"]]))
    dataset = recs[0]["data_source"] or config.dataset
    label = zoo_family(config)
    if label in labels:  # same family, other settings (e.g. lr): keep both sets of figures
      label = f"{label}_{len(labels)}"
    labels.add(label)
    rows = [epsilon_row(r["width"], r) for r in recs]
    print(f"\n{label}: epsilon on the {FLAGS.split} split (quartiles over pairs), naive vs "
          f"aligned to model {FLAGS.reference}")
    print(format_table(rows, COLUMNS, HEADERS))
    write_csv(fig_dir / f"{label}_epsilon_summary.csv", rows)
    paths = [figures.epsilon_vs_width(recs, dataset, fig_dir / f"{label}_epsilon_vs_width.png")]
    for which in ("naive", "aligned"):
      paths.append(figures.loss_curves(recs, dataset, which, fig_dir / f"{label}_curves_{which}.png",
                                       FLAGS.split))
      paths.append(figures.epsilon_matrices(recs, dataset, which,
                                            fig_dir / f"{label}_epsilon_matrix_{which}.png"))
    if len(FLAGS.align) > 1 or FLAGS.repair:
      names = check_methods(["weight"] + FLAGS.align)
      names += [f"{m}+repair" for m in ["naive"] + names] if FLAGS.repair else []
      rows = comparison_rows(recs, names)
      print(f"\n{label}: alignment methods, epsilon on the {FLAGS.split} split (quartiles over "
            f"pairs); 'ref'/'other': median over pairs with/without model {FLAGS.reference}; "
            "'optimal': pairs with the reference where the method reaches exact search's epsilon")
      print(format_table(rows, COMPARISON_COLUMNS, COMPARISON_HEADERS))
      write_csv(fig_dir / f"{label}_alignment_methods.csv", rows)
      paths.append(comparison_figure(recs, names, dataset,
                                     fig_dir / f"{label}_alignment_methods.png"))
      joint = [dict(r, mergemany=r["methods"]["mergemany"]) for r in recs
               if "perms" in r["methods"].get("mergemany", {})]
      if joint:  # Fig 4.6 without a favoured reference: does its band disappear?
        paths.append(figures.epsilon_matrices(joint, dataset, "mergemany",
                                              fig_dir / f"{label}_epsilon_matrix_mergemany.png"))
    diag = diagnostics_rows(recs)
    if diag:
      print(f"\n{label}: diagnostics. cycle: share of units where matching c to a directly "
            f"agrees with c to b to a, median over triples ({FLAGS.reference}, k, k+1); restarts: "
            "spread (max - min) of epsilon over 5 layer orders of weight matching; moved: median "
            "share of units a method permutes")
      print(format_table(diag, DIAGNOSTIC_COLUMNS, DIAGNOSTIC_HEADERS))
      write_csv(fig_dir / f"{label}_alignment_diagnostics.csv", diag)
    print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
  app.run(main)
