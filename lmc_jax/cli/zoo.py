"""Train zoos of networks, one per width, all models of a zoo at once.

  python -m experiments.zoo --width=512                 # 50 Moons nets, the study's settings
  python -m experiments.zoo --width=2,4,8,16,32,64,128,256,512
  python -m experiments.zoo --dataset=cifar10 --arch=resnet20 --width=1,2,4   # multipliers

Writes one directory per width, `<out>/<dataset>_w<width>/` with zoo.json and params.npz,
and ends with a table of mean +- std train/test loss and accuracy per width (also
written to `<out>/<dataset>_zoo_summary.csv`). Expected on Moons (the study's Table 3.1):
test accuracy ~0.86 at width 2 rising to ~0.998 from width 32 on.

A finished zoo is reused (after its checksum and shapes are checked); a killed run, started
again with the same command, continues from its last checkpoint (every --checkpoint_minutes)
and ends with the zoo an uninterrupted run writes. --overwrite builds the new zoo beside
the old one and swaps it in whole. One run per zoo directory at a time.
"""
from __future__ import annotations

import sys
from pathlib import Path

from absl import flags

from lmc_jax import result_files
from lmc_jax.cli.common import (
  define_distributed_flags,
  exit_on_lmc_error,
  init_distributed,
  run_main,
)
from lmc_jax.cli.config_flags import (
  config_from_flags,
  define_config_flags,
  define_run_flags,
  in_flags,
  run_options_from_flags,
  widths_from_flags,
)
from lmc_jax.config import ConfigError
from lmc_jax.data.datasets import dataset_info, dataset_slug, training_labels
from lmc_jax.execution import ExecutionPlan, plan_from_environment
from lmc_jax.nn.architectures import model_for
from lmc_jax.preflight import check_disk_room, check_output_dir
from lmc_jax.report.tables import ZOO_COLUMNS, format_table, write_zoo_summary, zoo_row
from lmc_jax.report.tensorboard import require_writer, write_zoo_curves
from lmc_jax.zoo.footprint import check_fits
from lmc_jax.zoo.io import load_history
from lmc_jax.zoo.runs import run_zoo, zoo_dirname
from lmc_jax.zoo.training import augment_shape

FLAGS = flags.FLAGS
define_config_flags(__name__)
define_run_flags(__name__)
flags.DEFINE_string("out", "runs", "Directory that receives one zoo directory per width.")
flags.DEFINE_string("tensorboard", None, "Also write each zoo's per-epoch training loss "
                    "(median and quartiles over the models), test metrics and final metrics as "
                    "TensorBoard event files under DIR/<zoo>/zoo (rewritten each run); needs "
                    'the extra: pip install -e ".[tensorboard]".')
define_distributed_flags()


def preflight(configs, out: Path, overwrite: bool, plan: ExecutionPlan,
              data_dir: str = "data") -> None:
  """Before any training: every network fits its dataset and the memory here, a training
  split holds examples, and `out` is a writable directory with room for every zoo (and the
  largest checkpoint)."""
  check_output_dir(out, "--out")
  need = 0
  for config in configs:
    try:
      augment_shape(config, dataset_info(config.data))
      model_for(config)
      if config.data.train_split:
        training_labels(config.data, data_dir)
    except ConfigError as e:
      raise in_flags(e) from None
    footprint = check_fits(config, plan)
    if overwrite or not (out / zoo_dirname(config) / result_files.ZOO_JSON).exists():
      need += footprint.disk_bytes
  check_disk_room(out, need, f"{len(configs)} zoo(s) of {configs[0].train.num_models} models",
                  "--out")


@exit_on_lmc_error
def main(argv):
  del argv
  init_distributed()
  widths = widths_from_flags()
  options = run_options_from_flags()
  configs = [config_from_flags(w) for w in widths]  # checks every width before any training
  out = Path(FLAGS.out)
  plan = plan_from_environment()
  if FLAGS.tensorboard:
    require_writer()
    check_output_dir(Path(FLAGS.tensorboard), "--tensorboard")
  preflight(configs, out, options.overwrite, plan, options.data_dir)
  rows, histories = [], []
  for config in configs:
    directory = out / zoo_dirname(config)
    doc = run_zoo(config, directory, options, plan)
    if doc is None:  # not the first of several processes: it has written and will report
      continue
    rows.append(zoo_row(doc))
    history = load_history(directory)
    if FLAGS.tensorboard:
      run = write_zoo_curves(FLAGS.tensorboard, directory.name, history, doc.models)
      print(f"TensorBoard run: {run}")
    if history is not None:
      histories.append((f"width {config.model.hidden[0]}", history))
  if not rows:
    return
  label = dataset_slug(FLAGS.dataset)  # names the files (npz:PATH -> npz_<stem>)
  print(f"{rows[0]['source'] or FLAGS.dataset}: mean +- std over the models of each zoo")
  print(format_table(rows, ZOO_COLUMNS))
  csv_path = write_zoo_summary(out, FLAGS.dataset)
  print(f"zoos in {out}; summary of all {FLAGS.dataset} zoos there: {csv_path}")
  if histories:
    from lmc_jax.report import figures  # matplotlib: only once there is something to draw
    name = rows[0]["source"] or FLAGS.dataset
    png = figures.training_history(histories, name,
                                   out / result_files.training_history_png(label))
    print(f"training history (history.npz in each zoo): {png}")
  sys.stdout.flush()


def run():
  """Console script `lmc-zoo`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
