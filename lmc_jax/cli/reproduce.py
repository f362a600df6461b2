"""Reproduce the whole study and write a report.

  python -m experiments.reproduce --preset=quick     # minutes on a 2-core CPU
  python -m experiments.reproduce --preset=cpu       # the study's scale where a CPU can, ~3 h
  python -m experiments.reproduce --preset=thesis    # the study's scale, for a GPU

Runs every experiment (E1-E9) through the documented entry points and writes
<out>/report.md with the study's tables (its numbers beside ours) and one PNG per figure
in <out>/figures/. MNIST is fetched if missing; CIFAR-10 is used if installed, or installed
from --cifar_source.

It can run in pieces: stopped (or killed) and started again with the same flags, it skips
every step that finished before with the same command and whose outputs are still there
and unchanged (<out>/steps.json records them), continues an interrupted zoo from its last
checkpoint, and writes the report from all the pieces. A step runs again when a step it
reads from (its --runs or --zoo) ran again.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from absl import flags, logging

from lmc_jax.atomic_files import atomic_write_bytes
from lmc_jax.cli.common import exit_on_lmc_error, run_main
from lmc_jax.preflight import check_output_dir
from lmc_jax.report.markdown import build_report
from lmc_jax.report.reproduction import PRESETS, steps
from lmc_jax.report.step_ledger import LEDGER, Ledger, run_or_keep

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "quick", list(PRESETS), "quick: minutes on a 2-core CPU; cpu: "
                  "the study's scale where a 2-core CPU finishes in about 3 h, the rest "
                  "reduced; thesis: full scale, for a GPU; smoke: tiny, checks the pipeline "
                  "only.")
flags.DEFINE_string("out", None, "Report folder (default docs/<preset>).")
flags.DEFINE_string("runs", None, "Where zoos go (default runs/reproduce_<preset>).")
flags.DEFINE_string("data_dir", "data", "Where datasets live.")
flags.DEFINE_string("cifar_source", None, "CIFAR-10 source to install if data_dir has none "
                    "(e.g. ../shared/data/cifar10-jpeg/cifar10-jpeg-q75.tgz).")


@exit_on_lmc_error
def main(argv):
  del argv
  preset = PRESETS[FLAGS.preset]
  out = Path(FLAGS.out or f"docs/{preset.name}")
  runs = Path(FLAGS.runs or f"runs/reproduce_{preset.name}")
  figdir = out / "figures"
  check_output_dir(out, "--out")  # before any step: the report and the zoos need somewhere
  check_output_dir(runs, "--runs")
  figdir.mkdir(parents=True, exist_ok=True)
  cifar_source = FLAGS.cifar_source
  if cifar_source and (Path(FLAGS.data_dir) / "cifar10" / "SOURCE.json").is_file():
    cifar_source = None  # already installed
  log, start = [], time.perf_counter()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])))
  data = Path(FLAGS.data_dir)
  installed = {"mnist": lambda: (data / "mnist" / "t10k-labels-idx1-ubyte").is_file(),
               "cifar10": lambda: (data / "cifar10" / "SOURCE.json").is_file()}
  ledger, fresh = Ledger(out / LEDGER), {}

  def run_step(argv):
    logging.info("python -m %s", " ".join(argv))
    with (out / "reproduce.log").open("a") as logf:
      return subprocess.run([sys.executable, "-m", *argv], stdout=logf,
                            stderr=subprocess.STDOUT, env=env).returncode

  for step in steps(preset, str(runs), str(figdir), FLAGS.data_dir, cifar_source):
    if step.needs and not installed[step.needs]():
      hint = "experiments.fetch --dataset=mnist" if step.needs == "mnist" else "--cifar_source=PATH"
      log.append((step.argv, f"skipped: {step.needs} not installed ({hint})", 0.0))
      continue
    record, ran = run_or_keep(ledger, step.argv, fresh, lambda: run_step(step.argv))
    log.append((step.argv, record.status if ran else f"{record.status} (kept, {record.finished})",
                record.seconds))
    if not ran:
      logging.info("kept: python -m %s (finished %s)", " ".join(step.argv), record.finished)
    if record.status != "ok":
      logging.error("step failed: %s (see %s)", " ".join(step.argv), out / "reproduce.log")
      break
  invocation = " ".join(["python -m experiments.reproduce", f"--preset={preset.name}"] + [
      f"--{n}={FLAGS[n].value}" for n in ("out", "runs", "data_dir", "cifar_source")
      if FLAGS[n].present])
  machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
  report = build_report(preset, figdir, runs, log, time.perf_counter() - start, machine,
                        invocation)
  atomic_write_bytes(out / "report.md", lambda f: f.write(report.encode()))
  done = sum(s.startswith("ok") for _, s, _ in log)
  print(f"report: {out / 'report.md'} ({done}/{len(log)} steps ok, "
        f"{(time.perf_counter() - start) / 60:.1f} min)")
  if any(s.startswith("failed") for _, s, _ in log):
    sys.exit(1)


def run():
  """Console script `lmc-reproduce`."""
  run_main(main, __doc__, __name__)


if __name__ == "__main__":
  run()
