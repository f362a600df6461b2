"""CPU seconds of one entry-point call in a test: as a process (`run_module`, the baseline)
and in the test's process (`run_cli`), interleaved, median of --repeats; prints a table.

  PYTHONPATH=. python scripts/bench_run_cli.py --repeats=3

Rows: a refusal (`--epochs=0`, before any work) and a tiny Moons zoo (width 4, 2 models,
1 epoch). The first in-process call of each kind also pays the imports and compilations a
test worker pays once; later calls are what every further test pays.
"""
import argparse
import resource
import statistics
import tempfile

from tests.helpers.cli import run_cli, run_module

CALLS = {
    "zoo refusal (--epochs=0)": ["--width=4", "--epochs=0"],
    "zoo, Moons w4, 2 models, 1 epoch": ["--width=4", "--num_models=2", "--epochs=1",
                                          "--n_train=128", "--n_test=128"],
}


def _cpu(who):
  r = resource.getrusage(who)
  return r.ru_utime + r.ru_stime


def _timed(run, args, who):
  with tempfile.TemporaryDirectory() as out:
    before = _cpu(who)
    r = run("zoo", *args, f"--out={out}/runs")
    return _cpu(who) - before, r.returncode


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  repeats = parser.parse_args().repeats
  rows = []
  for name, args in CALLS.items():
    process, inside, first = [], [], None
    for k in range(repeats + 1):
      s, code_p = _timed(run_module, args, resource.RUSAGE_CHILDREN)
      t, code_i = _timed(run_cli, args, resource.RUSAGE_SELF)
      assert code_p == code_i, (name, code_p, code_i)
      if k == 0:
        first = t
      else:
        process.append(s)
        inside.append(t)
    rows.append((name, statistics.median(process), first, statistics.median(inside)))
  print(f"{'call':36s} {'process s':>10s} {'in-process 1st s':>17s} {'in-process s':>13s}")
  for name, p, f, i in rows:
    print(f"{name:36s} {p:10.2f} {f:17.2f} {i:13.2f}")


if __name__ == "__main__":
  main()
