"""Benchmark: the vectorised zoo and pair sweep against the plain loops they replace.

  python -m experiments.bench            # Moons width 512, 50 models, 100 epochs
  python -m experiments.bench --quick    # a smaller zoo, about a minute on 2 CPU cores

Prints a table: seconds for each side measured in the same run (compilation excluded and
reported apart), the speed-up, and the achieved FLOP/s of the matrix products.
"""
from __future__ import annotations

import platform

import jax
from absl import app, flags

from experiments.common import exit_on_lmc_error
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.benchmarks import bench_alignment, bench_pair_sweep, bench_training
from lmc_jax.config import default_config
from lmc_jax.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.reporting import format_table
from lmc_jax.training import train_zoo
from lmc_jax.zoo_io import package_versions

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 512, "Hidden width of the Moons nets.")
flags.DEFINE_integer("num_models", 50, "Models in the zoo (pairs: n(n-1)/2).")
flags.DEFINE_integer("epochs", 100, "Training epochs timed.")
flags.DEFINE_bool("quick", False, "Small sizes for a 2-core CPU: 20 models, 20 epochs.")
flags.DEFINE_string("json", None, "Also write the numbers to this JSON file.")


def row(what, baseline, baseline_s, vectorised_s, flops, compile_s) -> dict:
  """One table row: both timings, the speed-up, and FLOP/s of the vectorised side."""
  return {"what": what, "baseline": baseline, "baseline_s": baseline_s, "vectorised_s": vectorised_s,
          "speedup": f"{baseline_s / vectorised_s:.1f}x",
          "gflops": "-" if flops is None else f"{flops / vectorised_s / 1e9:.1f}",
          "compile_s": compile_s}


@exit_on_lmc_error
def main(argv):
  del argv
  n, epochs = (20, 20) if FLAGS.quick else (FLAGS.num_models, FLAGS.epochs)
  if n < 2:
    raise LmcError(f"--num_models must be >= 2 to have pairs, got {n}.")
  config = default_config("moons", hidden=(FLAGS.width,), num_models=n, epochs=epochs)
  data = load_dataset(config)
  device = jax.devices()[0]
  print(f"device: {device.platform} {device.device_kind}, {jax.device_count()} device(s); "
        f"Moons width {FLAGS.width}, {n} models, {epochs} epochs")
  train = bench_training(config, data)
  zoo = train_zoo(config, data, log=None)
  sweep = bench_pair_sweep(config, data, zoo.params)
  align = bench_alignment(config, zoo.params)
  what_train = f"train {n} models x {epochs} epochs"
  rows = [
      row(what_train, "one model, a call per step", train["step_loop_s"], train["zoo_s"],
          train["flops"], train["compile_zoo_s"]),
      row(what_train, "one model, a call per epoch", train["loop_s"], train["zoo_s"],
          train["flops"], train["compile_zoo_s"]),
      row(f"{sweep['pairs']} pairs x 11 alphas, test loss", "loop over pairs, alphas",
          sweep["loop_s"], sweep["sweep_s"], sweep["flops"], sweep["compile_sweep_s"]),
      row(f"weight-match all {align['pairs']} pairs", "scipy, a pair at a time", align["host_s"],
          align["device_s"], None, align["compile_s"]),
  ]
  cols = ["what", "baseline", "baseline_s", "vectorised_s", "speedup", "gflops", "compile_s"]
  print(format_table(rows, cols, ["what", "baseline", "baseline s", "vectorised s", "speed-up",
                                  "GFLOP/s (vectorised)", "compile s"]))
  print(f"loop and sweep agree to {sweep['max_abs_diff']:.2e} (max abs difference in loss); "
        f"host and device matching objectives agree to {align['max_rel_objective_diff']:.1e} "
        "(max relative difference; float32 on the device)")
  if FLAGS.json:
    atomic_write_json(FLAGS.json, {"config": config.to_dict(), "training": train, "sweep": sweep,
                                   "alignment": align,
                                   "device": str(device), "machine": platform.platform(),
                                   "versions": package_versions()})


if __name__ == "__main__":
  app.run(main)
