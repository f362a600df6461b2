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

from pathlib import Path

from absl import flags

from lmc_jax.align.registry import MethodSettings, all_settings, check_methods, method_names
from lmc_jax.analysis.barrier import analyse_zoo, check_calibration, zoo_barriers
from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.config import PRECISIONS, ConfigError
from lmc_jax.errors import LmcError
from lmc_jax.execution import plan_from_environment
from lmc_jax.preflight import check_output_dir
from lmc_jax.report import connectivity as conn
from lmc_jax.report.calibration import COLUMNS as CALIBRATION_COLUMNS
from lmc_jax.report.calibration import HEADERS as CALIBRATION_HEADERS
from lmc_jax.report.calibration import calibration_figure, calibration_rows
from lmc_jax.report.tables import format_table
from lmc_jax.report.tensorboard import require_writer, write_barrier_measures
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import read_zoo_json
from lmc_jax.zoo.runs import find_zoos

FLAGS = flags.FLAGS
flags.DEFINE_list("zoo", None, "Zoo directories, comma-separated (default: every zoo under "
                  "--runs).")
flags.DEFINE_string("runs", "runs", "Where to look for zoos when --zoo is not given.")
flags.DEFINE_integer("reference", 0, "Model every other model is aligned to.", lower_bound=0)
flags.DEFINE_list("align", ["weight"], f"Alignment methods, comma-separated: "
                  f"{', '.join(method_names())} (weight always runs).")
flags.DEFINE_bool("repair", False, "Also measure every line after REPAIR (renormalised hidden "
                  "units), as entries '<method>+repair'.")
flags.DEFINE_bool("diagnostics", False, "Also record cycle consistency of weight and activation "
                  "matching and the spread of weight matching over 5 layer orders.")
flags.DEFINE_enum("split", "test", ["test", "train"], "Split the loss is measured on.")
flags.DEFINE_string("figures", None, "Where figures and summary CSVs go (default: "
                    "<runs>/figures, or <parent of the first --zoo>/figures).")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live (see experiments.fetch).")
flags.DEFINE_integer("bn_reset_batches", 10, "For nets with BatchNorm: recompute every "
                     "interpolated net's statistics on this many training batches of 256 "
                     "before measuring it (0: keep the interpolated running statistics).",
                     lower_bound=0)
flags.DEFINE_enum("precision", "fp32", PRECISIONS, "Matmuls of the sweeps: fp32, or bf16 "
                  "(bfloat16 inputs, float32 accumulation and everything else; MLPs only).")
flags.DEFINE_bool("calibrate_temperature", False, "Also measure every line with each "
                  "interpolated net's own softmax temperature, fit on the training rows the zoo "
                  "did not train on (it needs --train_subset below the training set when it was "
                  "trained); the calibrated curves and measures are printed beside the raw ones "
                  "and kept as each entry's 'calibrated' in barrier.json.")
flags.DEFINE_string("tensorboard", None, "Also write each zoo's measures per method "
                    "(median and quartiles over the pairs) and median loss curve as TensorBoard "
                    "event files under DIR/<zoo>/barrier (rewritten each run); needs the extra: "
                    'pip install -e ".[tensorboard]".')
flags.DEFINE_bool("recompute", False, "Recompute barrier.json even where a current one exists.")


def define_setting_flags() -> None:
  """One flag per setting of the registered alignment methods (those not defined yet: a
  method registered later can call this again)."""
  kinds = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
  for s in all_settings():
    if s.name in FLAGS:
      continue
    if s.choices is not None:
      flags.DEFINE_enum(s.name, s.default, list(s.choices), s.help)
    else:
      kinds[type(s.default)](s.name, s.default, s.help)


define_setting_flags()


def method_settings() -> MethodSettings:
  """The alignment settings the flags give; one out of its bounds is refused by its flag."""
  try:
    return MethodSettings(**{s.name: FLAGS[s.name].value for s in all_settings()
                             if s.name in FLAGS})
  except ConfigError as e:
    raise e.worded_for(f"--{e.field.rpartition('.')[2]}") from None


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
  methods = check_methods(FLAGS.align)
  settings = method_settings()
  check_output_dir(fig_dir, "--figures")
  if FLAGS.tensorboard:
    require_writer()
    check_output_dir(Path(FLAGS.tensorboard), "--tensorboard")
  plan = plan_from_environment()
  found = {}
  for z in zoos:  # checks every zoo before any work; barrier.json is written into it
    found[z] = read_zoo_json(z)
    check_output_dir(z, "--zoo" if FLAGS.zoo else "--runs")
    if FLAGS.calibrate_temperature:
      check_calibration(found[z].config, z)
  records = []
  for z in zoos:
    with held_zoo(z, "barrier analysis", found[z]) as zoo:  # the lock, then the zoo
      result = analyse_zoo(zoo, FLAGS.reference, FLAGS.split, data_dir=FLAGS.data_dir,
                           methods=methods, repair=FLAGS.repair,
                           diagnostics=FLAGS.diagnostics, settings=settings,
                           recompute=FLAGS.recompute, bn_reset_batches=FLAGS.bn_reset_batches,
                           precision=FLAGS.precision, plan=plan,
                           calibrate=FLAGS.calibrate_temperature)
      records.append(zoo_barriers(zoo, result))
    if FLAGS.tensorboard:
      print(f"TensorBoard: {write_barrier_measures(FLAGS.tensorboard, z.name, result)}")
  for label, recs in conn.group_families(records).items():
    rep = conn.report_family(label, recs, fig_dir, methods, FLAGS.repair, FLAGS.split)
    print(f"\n{label}: epsilon on the {FLAGS.split} split (quartiles over pairs), naive vs "
          f"aligned to model {FLAGS.reference}")
    print(format_table(rep.epsilon_rows, conn.EPSILON_COLUMNS, conn.EPSILON_HEADERS))
    if rep.method_rows:
      print(f"\n{label}: alignment methods, epsilon on the {FLAGS.split} split (quartiles over "
            f"pairs); 'ref'/'other': median over pairs with/without model {FLAGS.reference}; "
            "'optimal': pairs with the reference where the method reaches exact search's epsilon")
      print(format_table(rep.method_rows, conn.COMPARISON_COLUMNS, conn.COMPARISON_HEADERS))
    if rep.diagnostic_rows:
      print(f"\n{label}: diagnostics. cycle: share of units where matching c to a directly "
            f"agrees with c to b to a, median over triples ({FLAGS.reference}, k, k+1); restarts: "
            "spread (max - min) of epsilon over 5 layer orders of weight matching; moved: median "
            "share of units a method permutes")
      print(format_table(rep.diagnostic_rows, conn.DIAGNOSTIC_COLUMNS, conn.DIAGNOSTIC_HEADERS))
    paths = list(rep.paths)
    if FLAGS.calibrate_temperature:
      print(f"\n{label}: raw vs temperature-calibrated, medians over pairs on the "
            f"{FLAGS.split} split; T at 1/2: median temperature fit at the midpoint")
      rows = calibration_rows(recs, methods)
      print(format_table(rows, CALIBRATION_COLUMNS, CALIBRATION_HEADERS))
      paths.append(calibration_figure(recs, methods, fig_dir / f"{label}_calibrated.png"))
    print("figures: " + ", ".join(str(p) for p in paths))


def run():
  """Console script `lmc-barrier`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
