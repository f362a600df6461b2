"""Resume shown end to end: one zoo trained uninterrupted, and the same command killed
(SIGKILL, at the checkpoint after KILL_AT epochs) then started again. Prints the wall time
of each run and whether the two params.npz are the same bytes; exits 1 if they are not.

  python scripts/resume_demo.py                   # Moons, the main job: 50 x w512, 100 epochs
  python scripts/resume_demo.py --kill_at=45 --dataset=mnist --width=64 --num_models=10 --epochs=60
"""
import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(out: Path, zoo_args, env=None) -> float:
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "experiments.zoo", f"--out={out}", *zoo_args],
                 cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True)
  return time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kill_at", type=int, default=75, help="epochs done when it is killed")
  known, zoo_args = parser.parse_known_args()
  zoo_args += [f"--checkpoint_every={known.kill_at}", "--checkpoint_minutes=0"]
  with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    full = timed(work / "full", zoo_args)
    killed = timed(work / "resumed", zoo_args, {"LMC_JAX_CRASH_AT": "zoo:checkpoint"})
    rerun = timed(work / "resumed", zoo_args)
    (a,), (b,) = (list((work / d).glob("*/params.npz")) for d in ("full", "resumed"))
    same = filecmp.cmp(a, b, shallow=False)
  print(f"python -m experiments.zoo {' '.join(zoo_args)}")
  print("| run | wall s |\n|---|---|")
  print(f"| uninterrupted | {full:.1f} |")
  print(f"| killed after epoch {known.kill_at} | {killed:.1f} |")
  print(f"| the same command again (resumes) | {rerun:.1f} ({100 * rerun / full:.0f} % of "
        "uninterrupted) |")
  print(f"same params.npz bytes: {'yes' if same else 'NO'}")
  sys.exit(0 if same else 1)


if __name__ == "__main__":
  main()
