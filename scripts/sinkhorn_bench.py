"""Sinkhorn matching against weight matching on a ResNet-20 pair (CIFAR-10 shapes), one run.

  python scripts/sinkhorn_bench.py                      # width 1, 2 data steps, 3 repeats
  python scripts/sinkhorn_bench.py --data_steps=5 --repeats=5

The two networks are freshly initialised (random init, the zoo's default initialiser) and
the 2,048 training inputs are Gaussian noise with random labels: the seconds depend on the
shapes alone. Prints one table (lmc_jax.analysis.sinkhorn_bench): for each row the first
call (compilation included; also in this process's CPU seconds, which other work on the
machine does not inflate), the run alone (median of the repeats), the compilation (their
difference), and the seconds of the whole `sinkhorn` method at its default 50 steps
estimated from them (weight matching's start, compilation and 50 steps), against weight
matching's first call.
"""
import argparse
import platform

import jax
import numpy as np

from lmc_jax.analysis.sinkhorn_bench import bench_sinkhorn
from lmc_jax.execution import plan_from_environment
from lmc_jax.nn.conv import make_conv_net
from lmc_jax.report.tables import format_table
from lmc_jax.symmetry.derive import network_spec
from lmc_jax.symmetry.spec import without_signs
from lmc_jax.zoo.training import init_params

DEFAULT_STEPS = 50  # the sinkhorn method's default sinkhorn_steps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--width", type=int, default=1, help="ResNet-20 width multiplier.")
  parser.add_argument("--data_steps", type=int, default=2, help="Steps timed for the data "
                      "objective (each is a forward and backward pass on 256 images; 0: "
                      "leave those rows out).")
  parser.add_argument("--distance_steps", type=int, default=DEFAULT_STEPS,
                      help="Steps timed for the distance objective.")
  parser.add_argument("--repeats", type=int, default=3, help="Timed runs after the first.")
  args = parser.parse_args(argv)
  if min(args.width, args.distance_steps, args.repeats) < 1 or args.data_steps < 0:
    parser.error("--width, --distance_steps and --repeats must be at least 1 and "
                 "--data_steps at least 0; pass counts in those ranges.")
  shape = (32, 32, 3)
  d_in = int(np.prod(shape))
  model = make_conv_net("resnet20", args.width, 10, shape, "batchnorm")
  params = jax.tree_util.tree_map(np.asarray, init_params(
      model, d_in, jax.random.split(jax.random.key(0), 2)))
  spec = without_signs(network_spec(model, d_in))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2048, d_in)).astype(np.float32)
  y = rng.integers(0, 10, 2048).astype(np.int32)
  plan = plan_from_environment()
  rows = bench_sinkhorn(model, spec, params, x, y, args.data_steps, args.distance_steps,
                        args.repeats, plan=plan)
  weight_s = rows[0].first_s
  table = []
  for r in rows:
    total = r.estimate_s(DEFAULT_STEPS) + (weight_s if r.steps else 0.0)
    table.append({"name": r.name, "steps": r.steps, "first": r.first_s,
                  "cpu": r.first_cpu_s, "run": r.run_s,
                  "compile": r.compile_s, "total": total, "ratio": f"{total / weight_s:.1f}x",
                  "diff": "" if np.isnan(r.max_abs_diff) else f"{r.max_abs_diff:.1e}"})
  print(f"ResNet-20 width {args.width}, CIFAR-10 shapes, random init, one pair; "
        f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}, "
        f"host loops: {plan.host_loops(jax.tree_util.tree_map(lambda v: v[0], params))}")
  print(format_table(table, ["name", "steps", "first", "cpu", "run", "compile", "total",
                             "ratio", "diff"],
                     ["method", "steps timed", "first call s", "its CPU s", "run s (median)",
                      "compile s",
                      f"method at {DEFAULT_STEPS} steps s (est., compile incl.)",
                      "x weight matching", "max |P - before|"]))


if __name__ == "__main__":
  main()
