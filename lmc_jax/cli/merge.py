"""Merge models trained on different data or classes, every method side by side.

  python -m experiments.merge --zoo=runs/mnist_skew0.8_0of2_w128,runs/mnist_skew0.8_1of2_w128
  python -m experiments.merge --zoo=A,B --models=3,4 --method=naive,weight,zip --repair

Takes one model from each zoo (same dataset, architecture and width; any training split),
merges them by each --method and scores every merged network, each parent and the
ensemble (the mean of the parents' logits) on the whole test split: joint accuracy and
loss (argmax over every logit) and per-part accuracy (each parent's classes only). For two
zoos also the curve along alpha. Without --models, every pairing across the zoos (or
--pairs of them), so each number has its spread. Writes to --out: merge.json,
merged/<method>.npz (the first pairing's merged variables, keyed as params.npz without
the model axis; a partial zip's two branches with it, axis 0), merge_methods.csv and two figures.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from absl import flags, logging

from lmc_jax import result_files
from lmc_jax.align.registry import MethodSettings
from lmc_jax.analysis.merging import check_compatible, pairings_for, run_merge, summary_rows
from lmc_jax.atomic_files import atomic_write_bytes, atomic_write_json
from lmc_jax.cli.common import exit_on_lmc_error, int_list, run_main
from lmc_jax.errors import LmcError
from lmc_jax.merging.combine import check_merge_methods
from lmc_jax.merging.partial import check_zip_layers
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import merge_figures
from lmc_jax.report.tables import format_table
from lmc_jax.tree_utils import flatten
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.io import read_zoo_json

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories, comma-separated: one model of each is merged.",
                  required=True)
flags.DEFINE_list("models", None, "One model index per zoo (default: every pairing, or "
                  "--pairs of them).")
flags.DEFINE_integer("pairs", 0, "Without --models: this many pairings drawn by --seed from "
                     "every combination of models across the zoos (0: all).")
flags.DEFINE_list("method", ["naive", "weight", "activation", "mergemany", "zip"],
                  "Merging methods: naive, any alignment method (weight, activation, ste, "
                  "sinkhorn, mergemany, exact, plug-ins), zip (ZipIt!, two zoos).")
flags.DEFINE_bool("repair", False, "Also merge with REPAIR (entries '<method>+repair').")
flags.DEFINE_integer("alphas", 11, "Points along alpha for two zoos.")
flags.DEFINE_string("out", None, "Output folder (default: <parent of the first zoo>/merge_<zoo "
                    "names>).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live.")
flags.DEFINE_integer("seed", 0, "Seed of the pairings drawn, the fitting inputs and the methods.")
flags.DEFINE_integer("fit_samples", 2048, "Training inputs (of every part) that activation "
                     "matching, zip and REPAIR fit on.")
flags.DEFINE_integer("max_iter", 50, "Most weight-matching sweeps.")
flags.DEFINE_bool("signs", True, "Alignment methods search signed permutations where the "
                  "network lets units flip signs (LayerNorm'd MLPs do); false: plain ones.")
flags.DEFINE_integer("zip_layers", None, "ZipIt!'s partial zipping: zip the first K layers "
                     "(an MLP's Dense layers; 0..depth) and keep the rest one branch per "
                     "parent, scored on both parents' logits side by side (entries 'zip<K>'); "
                     "default: every layer.")
flags.DEFINE_float("zip_alpha", 0.3, "ZipIt!'s alpha: a merged group's correlations are "
                   "scaled by it (<= 0: each unit merges once).")
flags.DEFINE_float("zip_beta", 0.125, "ZipIt!'s beta: the share of merges a model may spend "
                   "within itself.")


def _out_dir(zoos) -> Path:
  if FLAGS.out:
    return Path(FLAGS.out)
  return zoos[0].parent / ("merge_" + "+".join(z.name for z in zoos))


@exit_on_lmc_error
def main(argv):
  del argv
  dirs = [Path(z) for z in FLAGS.zoo if z.strip()]
  methods = check_merge_methods([m.strip() for m in FLAGS.method if m.strip()])
  if "zip" in methods and len(dirs) != 2:
    raise LmcError(f"--method=zip merges two models and --zoo names {len(dirs)}; drop zip or "
                   "pass two zoos.")
  if FLAGS.alphas < 2:
    raise LmcError(f"--alphas must be >= 2, got {FLAGS.alphas}.")
  if FLAGS.pairs < 0:
    raise LmcError(f"--pairs must be >= 0, got {FLAGS.pairs}.")
  models = int_list(FLAGS.models, "models") if FLAGS.models is not None else None
  out = _out_dir(dirs)
  check_output_dir(out, "--out")
  records = [read_zoo_json(d) for d in dirs]
  zoos = [open_zoo(d, r) for d, r in zip(dirs, records)]
  check_compatible(zoos)
  if FLAGS.zip_layers is not None:
    if "zip" not in methods:
      raise LmcError("--zip_layers sets how much of the zip is zipped and --method has no zip; "
                     "add zip to --method or drop --zip_layers.")
    check_zip_layers(FLAGS.zip_layers, zoos[0].spec)
  pairings = pairings_for(zoos, models, FLAGS.pairs, FLAGS.seed)
  settings = MethodSettings(seed=FLAGS.seed, fit_samples=FLAGS.fit_samples,
                            max_iter=FLAGS.max_iter, signs=FLAGS.signs)
  run = run_merge(zoos, pairings, methods, FLAGS.repair, FLAGS.alphas, settings, FLAGS.data_dir,
                  FLAGS.zip_alpha, FLAGS.zip_beta, log=logging.info,
                  zip_layers=FLAGS.zip_layers)
  out.mkdir(parents=True, exist_ok=True)
  (out / result_files.MERGED_DIR).mkdir(exist_ok=True)
  for name, tree in run.merged.items():
    flat = {k: np.asarray(v) for k, v in flatten(tree).items()}
    atomic_write_bytes(out / result_files.MERGED_DIR / f"{name}.npz",
                       lambda f, flat=flat: np.savez(f, **flat))
  atomic_write_json(out / result_files.MERGE_JSON, run.result.to_json())
  rows = summary_rows(run.result)
  with open(out / result_files.MERGE_METHODS_CSV, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  paths = [merge_figures.accuracy_bars(run.result, out / result_files.MERGE_BARS_PNG)]
  if len(dirs) == 2:
    paths.append(merge_figures.accuracy_vs_alpha(run.result, out / result_files.MERGE_ALPHA_PNG))
  columns = list(rows[0])
  print(f"merging {len(pairings)} pairing(s) of {', '.join(str(d) for d in dirs)}: test "
        "accuracy, median and quartiles over pairings")
  print(format_table(rows, columns, columns))
  print(f"written: {out / result_files.MERGE_JSON}, {out / result_files.MERGE_METHODS_CSV}, "
        + ", ".join(str(p) for p in paths))


def run():
  """Console script `lmc-merge`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
