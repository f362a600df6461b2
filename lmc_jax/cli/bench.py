"""Benchmark: every vectorised path against the plain loop it replaces, in one run.

  python -m experiments.bench            # Moons widths 16 and 512, 50 models, 100 epochs
  python -m experiments.bench --quick    # 20 models, 20 epochs (timed in BUILD_NOTES.md)
  python -m experiments.bench --json=bench.json
  python -m experiments.bench --dataset=mnist --width=512 --epochs=60 --baseline_models=2
  python -m experiments.bench --dataset=cifar10 --arch=vgg_small --width=1 --num_models=3 \
      --epochs=1 --train_subset=512 --test_subset=256   # a conv zoo, small enough for a CPU

Prints one table: for zoo training, the pair sweep, a loss plane and weight matching
(to a reference and of all pairs), the seconds of each side measured in the same run
(compilation excluded and reported apart), the speed-up, the achieved FLOP/s and bytes/s,
and the floor: the least time the device could take at its measured matmul rate and copy
bandwidth, with which of the two bounds it. Under the table, for MLP zoos: the time a
training step's matrix products take alone, each at its own shape (small products and
transposed operands run below the square-matmul rate on a CPU), against the zoo's time.

Any network other than the MLP also gets a second table: images per second per model of
training, a bare step and the zoo's own epoch, lmc_jax against the same network written in
PyTorch (`analysis.torch_peers`, where torch is importable: `pip install -e ".[bench]"`;
otherwise the row is skipped and the reason printed), timed in turn in the same run.
`--peer_only` prints that table alone:

  python -m experiments.bench --dataset=cifar10 --arch=resnet20 --width=1,4 --peer_only \
      --num_models=2 --train_subset=1024

Conv nets (`--arch`) time training and the pair sweep; on one CPU device the library runs
them as host loops (one jitted call per step or network; `ExecutionPlan.host_loops`), and
that is what the 'vectorised' column times there, and the loss plane is not timed; weight
matching runs on the zoo's derived permutation spec.
"""
from __future__ import annotations

import platform
from typing import NamedTuple

import jax
from absl import flags

from lmc_jax.analysis.benchmarks import (
  SweepTimes,
  TrainingTimes,
  bench_alignment,
  bench_pair_sweep,
  bench_plane,
  bench_training,
  device_rates,
  floor_s,
)
from lmc_jax.analysis.peer_bench import bench_peer
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.cli.common import exit_on_lmc_error, int_list, run_main
from lmc_jax.cli.config_flags import in_flags
from lmc_jax.config import DEFAULT_ARCH, ConfigError, default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, plan_from_environment
from lmc_jax.lmc.batchnorm import has_batch_stats
from lmc_jax.nn.architectures import model_for, takes_depth
from lmc_jax.nn.architectures import names as arch_names
from lmc_jax.report.tables import format_table
from lmc_jax.result_files import BENCH_FORMAT
from lmc_jax.zoo.io import package_versions
from lmc_jax.zoo.training import train_zoo

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "moons", ["moons", "mnist", "cifar10"], "Dataset (mnist and "
                  "cifar10 need experiments.fetch first) with the study's settings for it.")
flags.DEFINE_string("arch", DEFAULT_ARCH, f"Network: one of {', '.join(arch_names())}, or "
                    "package.module:Name (a network other than the MLP needs an image dataset "
                    "where it convolves; --width is then its width multiplier).")
flags.DEFINE_list("width", None, "Hidden widths (default 16,512; for a network other than the "
                  "MLP its width multiplier, default its own); training and the sweep are "
                  "timed at each, the plane and alignment at the widest.")
flags.DEFINE_integer("train_subset", 0, "Train on this many training samples (0: all): for "
                     "small runs on a CPU.", lower_bound=0)
flags.DEFINE_integer("test_subset", 0, "Sweep on this many test samples (0: all).", lower_bound=0)
flags.DEFINE_integer("baseline_models", None, "Run the one-model-at-a-time training loops on "
                     "this many models and scale their time to the zoo (default: all).",
                     lower_bound=1)
flags.DEFINE_integer("baseline_pairs", None, "Run the loops over pairs (sweep, scipy matching) "
                     "on this many pairs and scale their time to all pairs (default: all).",
                     lower_bound=1)
flags.DEFINE_string("data_dir", "data", "Where downloaded datasets live (see experiments.fetch).")
flags.DEFINE_integer("num_models", 50, "Models in the zoo (pairs: n(n-1)/2).", lower_bound=2)
flags.DEFINE_integer("epochs", 100, "Training epochs timed.", lower_bound=1)
flags.DEFINE_integer("align_models", None, "Align all pairs of the first this many models "
                     "(default: all; --quick: 10).", lower_bound=2)
flags.DEFINE_bool("quick", False, "Small sizes for a 2-core CPU: 20 models, 20 epochs, "
                  "alignment of 10 models.")
flags.DEFINE_string("json", None, "Also write the numbers to this JSON file.")
flags.DEFINE_list("precision", ["fp32"], "Precisions timed side by side, e.g. fp32,bf16 (bf16: "
                  "bfloat16 matmul inputs, float32 accumulation; MLPs only); each row's floor "
                  "uses the measured matmul rate of its precision.")

flags.DEFINE_bool("peer", True, "For a network other than the MLP, also time images/s per "
                  "model against its PyTorch twin (skipped, with the reason, without torch).")
flags.DEFINE_bool("peer_only", False, "Time only the images/s table against PyTorch (implies "
                  "--peer).")
flags.DEFINE_integer("batch_size", None, "Batch size of the zoos timed (default: the "
                     "dataset's).", lower_bound=1)
flags.DEFINE_integer("peer_steps", 5, "Bare steps per turn in the PyTorch comparison (their "
                     "median is the turn's time).", lower_bound=1)
flags.DEFINE_integer("peer_repeats", 3, "Times each side of the PyTorch comparison is run, "
                     "in turn; medians are kept.", lower_bound=1)

COLUMNS = ["what", "baseline", "baseline_s", "vectorised_s", "speedup", "gflops", "gbytes",
           "floor_s", "of_floor", "bound", "compile_s"]
HEADERS = ["what", "baseline", "baseline s", "vectorised s", "speed-up", "GFLOP/s", "GB/s",
           "floor s", "floor/actual", "bound", "compile s"]


def row(what, baseline, baseline_s, vectorised_s, compile_s, rates, flops=None,
        num_bytes=None) -> dict:
  """One table row: both timings, the speed-up, and the vectorised side's rates and floor."""
  out = {"what": what, "baseline": baseline, "baseline_s": baseline_s,
         "vectorised_s": vectorised_s, "speedup": f"{baseline_s / vectorised_s:.1f}x",
         "gflops": "-", "gbytes": "-", "floor_s": "-", "of_floor": "-", "bound": "-",
         "compile_s": compile_s}
  if flops is not None:
    floor, bound = floor_s(flops, num_bytes, rates)
    out.update(gflops=f"{flops / vectorised_s / 1e9:.1f}",
               gbytes=f"{num_bytes / vectorised_s / 1e9:.2f}", floor_s=floor,
               of_floor=f"{floor / vectorised_s:.1%}", bound=bound)
  return out


def config_for(width: int, n: int, epochs: int, precision: str = "fp32"):
  """The zoo timed at `width` (checked: a conv net on Moons is refused here)."""
  try:
    depth = len(default_config(FLAGS.dataset).model.hidden) if takes_depth(FLAGS.arch) else 1
    config = default_config(FLAGS.dataset, arch=FLAGS.arch, hidden=(width,) * depth,
                            num_models=n, epochs=epochs, train_subset=FLAGS.train_subset,
                            test_subset=FLAGS.test_subset, precision=precision)
    if FLAGS.batch_size is not None:
      config = config.replace(batch_size=FLAGS.batch_size)
    model_for(config)
    return config
  except ConfigError as e:
    raise in_flags(e) from None


def default_widths() -> list:
  """Widths timed when --width is not given: 16 and 512 hidden units for the MLP, the
  architecture's own default width (multiplier) otherwise."""
  try:
    if takes_depth(FLAGS.arch):
      return [16, 512]
    return list(default_config(FLAGS.dataset, arch=FLAGS.arch).model.hidden)
  except ConfigError as e:
    raise in_flags(e) from None


class WidthTimes(NamedTuple):
  """What one width of the record holds."""
  training: TrainingTimes
  sweep: SweepTimes


def key_of(width: int, precision: str) -> str:
  """`w512`, or `w512_bf16`: a width's entry in the record."""
  return f"w{width}" + ("" if precision == "fp32" else f"_{precision}")


def width_rows(width: int, n: int, epochs: int, rates: dict, record: dict,
               precision: str, plan: ExecutionPlan):
  """Training and sweep rows for one width; returns (rows, config, data, trained params)."""
  config = config_for(width, n, epochs, precision)
  rates = rates.at(precision)
  data = load_dataset(config, FLAGS.data_dir)
  train = bench_training(config, data, FLAGS.baseline_models, plan)
  zoo = train_zoo(config, data, log=None, plan=plan)
  sweep = bench_pair_sweep(config, data, zoo.variables, FLAGS.baseline_pairs, plan)
  record[key_of(width, precision)] = WidthTimes(train, sweep)
  tag = "" if precision == "fp32" else f" [{precision}]"
  what = f"w{width}{tag}: train {n} models x {epochs} epochs"
  pairs = f"w{width}{tag}: {sweep.pairs} pairs x 11 alphas"
  t, s = train, sweep
  scaled = f" (scaled from {t.baseline_models} of {n})" if t.baseline_models < n else ""
  pscaled = (f" (scaled from {s.baseline_pairs} of {s.pairs})" if s.baseline_pairs < s.pairs
             else "")
  per_epoch = ("a model at a time, a call per epoch of host-looped steps" if t.host_loops
               else "a model at a time, a call per epoch")
  per_net = "loop: a jitted call per (pair, alpha)" + (", batches unrolled" if s.host_loops
                                                        else "")
  if has_batch_stats(zoo.variables):  # every side mixes the statistics
    pairs += ", BatchNorm stats interpolated, no reset"
  rows = [
      row(what, "a model at a time, a call per step" + scaled, t.step_loop_s, t.zoo_s,
          t.compile_zoo_s, rates, t.flops, t.bytes),
      row(what, per_epoch + scaled, t.loop_s, t.zoo_s, t.compile_zoo_s, rates, t.flops, t.bytes),
      row(pairs, "loop: mix per tensor, a call per batch" + pscaled, s.study_loop_s, s.sweep_s,
          s.compile_sweep_s, rates, s.flops, s.bytes),
      row(pairs, per_net + pscaled, s.loop_s, s.sweep_s, s.compile_sweep_s, rates, s.flops,
          s.bytes),
  ]
  return rows, config, data, zoo.variables


PEER_COLUMNS = ["what", "baseline", "lmc_jax", "torch", "baseline_ratio", "ratio"]
PEER_HEADERS = ["images/s per model", "lmc_jax, XLA conv (lax)", "lmc_jax (zoo default)",
                "PyTorch", "lax/PyTorch", "lmc_jax/PyTorch"]


def peer_rows(width: int, n: int, epochs: int, plan: ExecutionPlan):
  """The images/s rows of one width, and the record of its times."""
  config = config_for(width, n, epochs)
  data = load_dataset(config, FLAGS.data_dir)
  model = model_for(config)
  # The library's conv nets time the zoo's convolutions ('auto': the compiled kernels on a
  # CPU) against XLA's own ('lax') as the baseline.
  old = model.clone(kernel_grad="lax") if hasattr(model, "kernel_grad") else None
  times = bench_peer(config, data, model, baseline=old,
                     repeats=FLAGS.peer_repeats, step_repeats=FLAGS.peer_steps, plan=plan)
  fmt = lambda v: "-" if v is None else f"{v:.1f}"
  ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"
  rows = []
  for what, label in (("step", f"batch {times.batch}, a bare step"),
                      ("epoch", f"the zoo's epoch ({n} models, {times.train_samples} "
                                "samples, augmentation and losses)")):
    ours, theirs = times.images_per_s("lmc_jax", what), times.images_per_s("torch", what)
    base = times.images_per_s("baseline", what)
    rows.append({"what": f"w{width}: {label}", "baseline": fmt(base), "lmc_jax": fmt(ours),
                 "torch": fmt(theirs), "baseline_ratio": ratio(base, theirs),
                 "ratio": ratio(ours, theirs)})
  return rows, times


@exit_on_lmc_error
def main(argv):
  del argv
  n, epochs = (20, 20) if FLAGS.quick else (FLAGS.num_models, FLAGS.epochs)
  if FLAGS.baseline_models is not None and not 1 <= FLAGS.baseline_models <= n:
    raise LmcError(f"--baseline_models must be between 1 and --num_models ({n}), got "
                   f"{FLAGS.baseline_models}.")
  align_n = FLAGS.align_models or (10 if FLAGS.quick else n)
  if n < 3 and not FLAGS.peer_only:
    raise LmcError(f"--num_models must be >= 3 (pairs and a plane), got {n}.")
  if not 2 <= align_n <= n:
    raise LmcError(f"--align_models must be between 2 and --num_models ({n}), got {align_n}.")
  widths = int_list(FLAGS.width, "width") if FLAGS.width is not None else default_widths()
  if not widths:
    raise LmcError("--width must list at least one width.")
  precisions = list(dict.fromkeys(p.strip() for p in FLAGS.precision if p.strip()))
  if not precisions:
    raise LmcError("--precision is empty; pass fp32, bf16 or fp32,bf16.")
  for width in widths:  # bad settings fail here, before any timing
    for precision in precisions:
      config_for(width, n, epochs, precision)
  device = jax.devices()[0]
  plan = plan_from_environment()
  if FLAGS.peer_only:
    if takes_depth(FLAGS.arch):
      raise LmcError(f"--peer_only times a network against its PyTorch twin and --arch="
                     f"{FLAGS.arch} has none; pass a conv net, e.g. --arch=resnet20.")
    print(f"device: {device.platform} {device.device_kind}; {FLAGS.dataset}, {FLAGS.arch}, "
          f"{n} models")
    peer = peer_table(widths, n, epochs, plan)
    if FLAGS.json:
      atomic_write_json(FLAGS.json, {"format": BENCH_FORMAT,
                                     "settings": {"models": n, "epochs": epochs,
                                                  "widths": widths, "arch": FLAGS.arch,
                                                  "train_subset": FLAGS.train_subset},
                                     "results": {"peer": peer}, "device": str(device),
                                     "machine": platform.platform(),
                                     "versions": package_versions()})
    return
  rates = device_rates()
  print(f"device: {device.platform} {device.device_kind}, {jax.device_count()} device(s); "
        f"measured copy {rates.copy_bytes_per_s / 1e9:.1f} GB/s, float32 matmul "
        f"{rates.matmul_flops_per_s / 1e9:.0f} GFLOP/s, bf16 matmul "
        f"{rates.bf16_matmul_flops_per_s / 1e9:.0f} GFLOP/s; {FLAGS.dataset}, {FLAGS.arch}, "
        f"{n} models, {epochs} epochs")
  record, rows, widest = {}, [], max(widths)
  for width in widths:
    for precision in precisions:
      width_out, config, data, params = width_rows(width, n, epochs, rates, record, precision,
                                                   plan)
      rows += width_out
      if width == widest and precision == precisions[0]:  # plane and alignment: widest zoo
        widest_zoo = config, data, params
  config, data, params = widest_zoo
  # A plane is one jitted grid; where the zoo runs from host loops (conv nets on one CPU
  # device) there is no such grid to time.
  looped = record[key_of(widest, precisions[0])].training.host_loops
  plane = None if looped else bench_plane(config, data, params)
  first = jax.tree_util.tree_map(lambda v: v[:align_n], params)
  align = bench_alignment(config.replace(num_models=align_n), first,
                          baseline_pairs=FLAGS.baseline_pairs)
  if plane is not None:
    rows.append(row(f"w{widest}: loss plane, {plane.points} points", "a jitted call per point",
                    plane.loop_s, plane.plane_s, plane.compile_s, rates, plane.flops,
                    plane.bytes))
  rows += [
      row(f"w{widest}: weight-match {align.models - 1} models to one",
          "scipy, a model at a time", align.reference_host_s, align.reference_device_s,
          align.compile_s, rates),
      row(f"w{widest}: weight-match all {align.pairs} pairs", "scipy, a pair at a time" + (
          f" (scaled from {align.baseline_pairs} of {align.pairs})"
          if align.baseline_pairs < align.pairs else ""),
          align.host_s, align.device_s, align.compile_s, rates),
  ]
  print(format_table(rows, COLUMNS, HEADERS))
  peer = peer_table(widths, n, epochs, plan) if FLAGS.peer and not takes_depth(FLAGS.arch) \
      else None
  for width in widths:
    for p in precisions:
      training = record[key_of(width, p)].training
      if training.products_s:
        print(f"w{width} {p}: a training step's matrix products, each timed alone at its own "
              f"shape, run at {training.products_flops_per_s / 1e9:.0f} GFLOP/s: "
              f"{training.products_s:.3g} s for this zoo, which trains in "
              f"{training.zoo_s:.3g} s ({training.products_s / training.zoo_s:.0%} "
              "of its time)")
  for width in widths:
    base = record[key_of(width, precisions[0])]
    for p in precisions[1:]:
      other = record[key_of(width, p)]
      print(f"w{width}: {p} trains {base.training.zoo_s / other.training.zoo_s:.2f}x "
            f"and sweeps {base.sweep.sweep_s / other.sweep.sweep_s:.2f}x as fast as "
            f"{precisions[0]}")
  diffs = [record[key_of(w, p)].sweep.max_abs_diff for w in widths for p in precisions]
  diffs += [plane.max_abs_diff] if plane is not None else []
  print(f"loops and vectorised paths agree to {max(diffs):.2e} (max abs difference in loss); "
        f"host and device matching objectives to {align.max_rel_objective_diff:.1e} "
        "(max relative difference; float32 on the device). Alignment: 'vectorised' is the "
        "jitted solver vmapped over models or pairs.")
  if looped:
    print(f"--arch={FLAGS.arch}: on one CPU device this network trains and sweeps from host "
          "loops (a jitted call per model step or network), so 'vectorised' there is that "
          "loop, and the loss plane is not timed.")
  if FLAGS.json:
    atomic_write_json(FLAGS.json, {"format": BENCH_FORMAT,
                                   "settings": {"models": n, "epochs": epochs, "widths": widths,
                                                "precisions": precisions,
                                                "align_models": align_n, "arch": FLAGS.arch,
                                                "train_subset": FLAGS.train_subset,
                                                "test_subset": FLAGS.test_subset},
                                   "rates": rates._asdict(),
                                   "results": {**{k: {"training": v.training._asdict(),
                                                      "sweep": v.sweep._asdict()}
                                                  for k, v in record.items()},
                                               "plane": plane and plane._asdict(),
                                               "alignment": align._asdict(),
                                               "peer": peer},
                                   "table": rows,
                                   "device": str(device), "machine": platform.platform(),
                                   "versions": package_versions()})


def peer_table(widths, n: int, epochs: int, plan: ExecutionPlan) -> dict:
  """Prints the images/s table against PyTorch for every width; returns its record."""
  rows, record, skipped = [], {}, None
  for width in widths:
    width_out, times = peer_rows(width, n, epochs, plan)
    rows += width_out
    record[f"w{width}"] = times._asdict()
    skipped = times.torch_skipped
  print(format_table(rows, PEER_COLUMNS, PEER_HEADERS))
  from lmc_jax.nn.conv import convolution_note
  print(f"lmc_jax's convolutions: {convolution_note()}.")
  if skipped:
    print(f"PyTorch rows skipped: {skipped}.")
  else:
    import torch
    print(f"PyTorch {torch.__version__} on {torch.get_num_threads()} thread(s); each side "
          f"timed {FLAGS.peer_repeats} times in turn, medians.")
  return record


def run():
  """Console script `lmc-bench`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
