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

import jax
from absl import flags

from lmc_jax import result_files
from lmc_jax.cli.common import (
  define_distributed_flags,
  exit_on_lmc_error,
  init_distributed,
  int_list,
  run_main,
)
from lmc_jax.config import (
  ARCHS,
  AUGMENTS,
  CONV_NORMS,
  DATASET_DEFAULTS,
  PRECISIONS,
  default_config,
)
from lmc_jax.errors import LmcError
from lmc_jax.nn.models import INITS, LAYERNORM_POSITIONS, model_for
from lmc_jax.nn.optim import OPTIMIZERS, SCHEDULES
from lmc_jax.preflight import check_disk_room, check_output_dir
from lmc_jax.report import figures
from lmc_jax.report.tables import format_table, write_zoo_summary, zoo_row
from lmc_jax.zoo.footprint import check_fits
from lmc_jax.zoo.io import load_history
from lmc_jax.zoo.runs import run_zoo, zoo_dirname

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "moons", f"Dataset: one of {', '.join(DATASET_DEFAULTS)}.")
flags.DEFINE_list("width", ["512"], "Hidden layer width(s), comma-separated; one zoo per width.")
flags.DEFINE_integer("depth", None, "Number of hidden layers, each of --width units "
                     "(default: the dataset's, 1 for moons, 3 for mnist).")
flags.DEFINE_integer("num_models", None, "Models per zoo (default: 50, as the study; cifar10: 10).")
flags.DEFINE_integer("epochs", None, "Training epochs (default moons: 100, mnist: 60).")
flags.DEFINE_integer("batch_size", None, "Mini-batch size (default: 256).")
flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "Optimizer, PyTorch semantics (default: adamw). "
                  "On cifar10 it also selects the study's E8 settings for that optimizer.")
flags.DEFINE_float("lr", None, "Learning rate; for onecycle(_torch) the schedule's peak unless "
                   "--peak_lr is given (default moons: 0.1, mnist: 0.01).")
flags.DEFINE_float("peak_lr", None, "Peak learning rate of the onecycle schedule (default mnist: "
                   "0.1; otherwise --lr).")
flags.DEFINE_float("weight_decay", None, "Weight decay: decoupled for adamw, L2 otherwise "
                   "(default: 0.01).")
flags.DEFINE_float("momentum", None, "SGD momentum (default: 0.9).")
flags.DEFINE_enum("schedule", None, SCHEDULES, "Learning-rate schedule over all steps "
                  "(default moons: cosine, mnist: onecycle). onecycle is optax's one-cycle; "
                  "onecycle_torch is torch's OneCycleLR rule exactly (same values, peak and end "
                  "one step earlier: about 2e-4 of the peak apart at most over 60 x 235 steps).")
flags.DEFINE_bool("cycle_momentum", False, "With a one-cycle schedule, also cycle adamw's beta1 "
                  "(sgd's, rmsprop's momentum) 0.95 -> 0.85 at the peak -> 0.95 at the end, as "
                  "torch's OneCycleLR does by default; on sgd it replaces --momentum and on "
                  "rmsprop it switches torch's momentum buffer on. Not for adagrad. The "
                  "momentum follows torch's phase boundaries: with --schedule=onecycle_torch "
                  "both match torch (default: off, a constant beta1 0.9 / --momentum).")
flags.DEFINE_enum("init", None, INITS, "Weight init: pytorch (torch.nn.Linear's default, what "
                  "the study used; the default), default (Flax's), kaiming_normal, "
                  "kaiming_uniform (He, ReLU gain, zero bias), kaiming_normal_torch_bias, "
                  "kaiming_uniform_torch_bias (the study's section-5.2 code: torch's "
                  "kaiming_normal_/kaiming_uniform_ on the weight, torch.nn.Linear's default "
                  "bias).")
flags.DEFINE_enum("arch", "mlp", ARCHS, "Network: mlp (the study's; --width are hidden "
                  "widths), vgg (VGG-11), vgg_small (3 conv stages of 16, 32, 64 channels) or "
                  "resnet20 (the CIFAR ResNet-20); for the conv nets --width is the width "
                  "multiplier and the dataset must have images (mnist, cifar10).")
flags.DEFINE_enum("norm", None, CONV_NORMS, "Norm of the conv nets after each conv "
                  "(default: batchnorm; the sweeps then reset its statistics).")
flags.DEFINE_enum("augment", None, AUGMENTS, "Training augmentation of image datasets: "
                  "crop_flip (random crop after 4-pixel padding, horizontal flip; default for "
                  "conv nets on cifar10) or none.")
flags.DEFINE_integer("train_subset", 0, "Train on this many training samples, drawn by "
                     "--data_seed (0: all): for reduced runs on a CPU.")
flags.DEFINE_integer("test_subset", 0, "Evaluate on this many test samples, drawn by "
                     "--data_seed (0: all).")
flags.DEFINE_enum("layernorm", None, LAYERNORM_POSITIONS, "LayerNorm on each hidden layer "
                  "(default moons: none; mnist, cifar10: before_relu, Linear -> LayerNorm -> "
                  "ReLU, the order that reproduces the study's MNIST table; after_relu is its "
                  "published code's order, which collapses many narrow nets).")
flags.DEFINE_float("layernorm_eps", None, "Epsilon of every LayerNorm (default: 1e-6, Flax's; "
                   "PyTorch's nn.LayerNorm uses 1e-5).")
flags.DEFINE_enum("precision", "fp32", PRECISIONS, "Matmuls of training: fp32, or bf16 "
                  "(bfloat16 inputs; params, optimizer state, LayerNorm, the loss and every "
                  "accumulation in float32; MLPs only). Part of the zoo's config.")
flags.DEFINE_integer("seed", 0, "Seed of model inits and data orders; same seed, same zoo.")
flags.DEFINE_integer("data_seed", 0, "Seed of the generated dataset (Moons).")
flags.DEFINE_integer("n_train", 512, "Moons training samples.")
flags.DEFINE_integer("n_test", 512, "Moons test samples.")
flags.DEFINE_float("noise", 0.1, "Moons noise standard deviation.")
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live (see experiments.fetch).")
flags.DEFINE_string("out", "runs", "Directory that receives one zoo directory per width.")
flags.DEFINE_bool("overwrite", False, "Retrain and replace a zoo that already exists, whatever "
                  "state it is in; the new zoo is built beside it and swapped in whole.")
flags.DEFINE_bool("resume", True, "Continue an interrupted run from its last checkpoint "
                  "(checkpoint.npz in the zoo directory); the result is the zoo an "
                  "uninterrupted run writes. --noresume starts again from epoch 0.")
flags.DEFINE_integer("checkpoint_every", 0, "Also checkpoint every this many epochs "
                     "(0: by time only, see --checkpoint_minutes).")
flags.DEFINE_float("checkpoint_minutes", 10.0, "Checkpoint the training state at most every "
                   "this many minutes (0: never by time).")
flags.DEFINE_integer("eval_every", 0, "Also record every model's test loss and accuracy every "
                     "this many epochs (and after the last) in history.npz; 0: train loss only.")
define_distributed_flags()

COLUMNS = ["width", "optimizer", "init", "models", "diverged", "collapsed", "train_loss",
           "test_loss", "train_acc", "test_acc"]


def config_for(width: int):
  if FLAGS.arch != "mlp":
    if FLAGS.depth is not None:
      raise LmcError(f"--depth applies to --arch=mlp only; --arch={FLAGS.arch} has a fixed "
                     "depth, so drop --depth.")
    depth = 1
  else:
    depth = FLAGS.depth or len(DATASET_DEFAULTS.get(FLAGS.dataset, {}).get("hidden", (1,)))
  return default_config(
      FLAGS.dataset, hidden=(width,) * depth, arch=FLAGS.arch, norm=FLAGS.norm,
      augment=FLAGS.augment, train_subset=FLAGS.train_subset, test_subset=FLAGS.test_subset,
      num_models=FLAGS.num_models, epochs=FLAGS.epochs,
      batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
      peak_lr=FLAGS.peak_lr, weight_decay=FLAGS.weight_decay, momentum=FLAGS.momentum,
      schedule=FLAGS.schedule, init=FLAGS.init, layernorm=FLAGS.layernorm, seed=FLAGS.seed,
      data_seed=FLAGS.data_seed, n_train=FLAGS.n_train, n_test=FLAGS.n_test, noise=FLAGS.noise,
      layernorm_eps=FLAGS.layernorm_eps, cycle_momentum=FLAGS.cycle_momentum,
      precision=FLAGS.precision)


def preflight(configs, out: Path) -> None:
  """Before any training: every network fits its dataset and the memory here, and `out`
  is a writable directory with room for every zoo (and the largest checkpoint)."""
  check_output_dir(out, "--out")
  need = 0
  for config in configs:
    model_for(config.validate())
    footprint = check_fits(config, jax.device_count())
    if FLAGS.overwrite or not (out / zoo_dirname(config) / result_files.ZOO_JSON).exists():
      need += footprint.disk_bytes
  check_disk_room(out, need, f"{len(configs)} zoo(s) of {configs[0].num_models} models", "--out")


@exit_on_lmc_error
def main(argv):
  del argv
  init_distributed()
  widths = int_list(FLAGS.width, "width")
  if FLAGS.checkpoint_every < 0 or not FLAGS.checkpoint_minutes >= 0:
    raise LmcError(f"--checkpoint_every and --checkpoint_minutes must be >= 0 (0: off), got "
                   f"{FLAGS.checkpoint_every} and {FLAGS.checkpoint_minutes}.")
  configs = [config_for(w) for w in widths]  # validates every width before any training
  out = Path(FLAGS.out)
  preflight(configs, out)
  rows, histories = [], []
  for config in configs:
    directory = out / zoo_dirname(config)
    doc = run_zoo(config, directory, FLAGS.overwrite, FLAGS.data_dir, FLAGS.eval_every,
                  FLAGS.resume, FLAGS.checkpoint_every, FLAGS.checkpoint_minutes)
    if doc is None:  # not the first of several processes: it has written and will report
      continue
    rows.append(zoo_row(doc))
    history = load_history(directory)
    if history is not None:
      histories.append((f"width {config.hidden[0]}", history))
  if not rows:
    return
  print(f"{rows[0]['source'] or FLAGS.dataset}: mean +- std over the models of each zoo")
  print(format_table(rows, COLUMNS))
  csv_path = write_zoo_summary(out, FLAGS.dataset)
  print(f"zoos in {out}; summary of all {FLAGS.dataset} zoos there: {csv_path}")
  if histories:
    name = rows[0]["source"] or FLAGS.dataset
    png = figures.training_history(histories, name,
                                   out / result_files.training_history_png(FLAGS.dataset))
    print(f"training history (history.npz in each zoo): {png}")
  sys.stdout.flush()


def run():
  """Console script `lmc-zoo`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
