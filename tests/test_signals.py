"""Ctrl-C and SIGTERM stop a run cleanly: zoo training checkpoints at the end of the epoch
the signal arrives in, says in one line what it saved and how to continue, and exits 130
(SIGINT) or 143 (SIGTERM) with no traceback and nothing half-written; the same command
then ends with the zoo an uninterrupted run writes, byte for byte. Analyses keep what they
finished. The signals are sent at exact moments (`LMC_JAX_CRASH_SIGNAL`), and once from
outside as a user would; the runs that finish after them run in this process (`run_cli`)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lmc_jax import crash_points, stopping
from lmc_jax.result_files import BARRIER_JSON
from lmc_jax.zoo.handle import open_zoo
from tests.helpers.cli import ROOT, run_cli, run_module
from tests.test_zoo_faults import no_leftovers, zoo_bytes

ARGS = ["--width=4", "--num_models=3", "--epochs=8", "--checkpoint_minutes=0"]


def signalled(point: str, sig: str, out, *args, module="zoo"):
  """Runs the entry point with signal `sig` sent to itself at crash point `point`; checks
  the exit status and that stderr ends in one line and holds no traceback."""
  r = run_module(module, *([f"--out={out}"] if module == "zoo" else []), *args,
                 env={crash_points.ENV: point, crash_points.SIGNAL_ENV: sig})
  assert r.returncode == 128 + getattr(signal, sig), (r.returncode, r.stderr[-3000:])
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("stopped by"), r.stderr[-3000:]
  return last


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  out = tmp_path_factory.mktemp("uninterrupted")
  r = run_module("zoo", f"--out={out}", *ARGS)
  assert r.returncode == 0, r.stderr[-3000:]
  return {"bytes": zoo_bytes(out / "moons_w4"), "dir": out / "moons_w4"}


def test_sigterm_then_ctrl_c_then_the_same_command_ends_with_the_uninterrupted_zoo(
    tmp_path, uninterrupted):
  out = tmp_path / "runs"
  ckpt = out / "moons_w4" / "checkpoint.npz"
  # No checkpoint is due (by time or count): the signal alone makes one after epoch 3.
  line = signalled("zoo:epoch#3", "SIGTERM", out, *ARGS)
  assert line == (f"stopped by SIGTERM; saved: the training state after epoch 3 of 8 in "
                  f"{ckpt}. Run the same command again to continue from there.")
  assert not (out / "moons_w4" / "zoo.json").exists() and ckpt.is_file()
  assert not list((out / "moons_w4").glob(".*"))  # no temporary beside it
  line = signalled("zoo:epoch#3", "SIGINT", out, *ARGS)  # resumed: epochs 4, 5, 6
  assert "stopped by Ctrl-C (SIGINT); saved: the training state after epoch 6 of 8" in line
  r = run_cli("zoo", f"--out={out}", *ARGS)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"resuming from {ckpt} after epoch 6 of 8" in r.stderr
  assert zoo_bytes(out / "moons_w4") == uninterrupted["bytes"]
  no_leftovers(out)


def test_a_signal_while_the_zoo_is_saved_waits_for_the_whole_zoo(tmp_path, uninterrupted):
  out = tmp_path / "runs"
  line = signalled("zoo:staged", "SIGTERM", out, *ARGS)
  assert f"saved: the whole zoo {out / 'moons_w4'}." in line
  assert zoo_bytes(out / "moons_w4") == uninterrupted["bytes"]
  no_leftovers(out)
  open_zoo(out / "moons_w4")  # whole: checksum and shapes pass


def test_ctrl_c_from_outside_stops_training_at_an_epoch_boundary(tmp_path):
  """A real Ctrl-C (SIGINT from another process) in the middle of a long run."""
  out = tmp_path / "runs"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.Popen([sys.executable, "-m", "experiments.zoo", f"--out={out}",
                           "--width=4", "--num_models=2", "--epochs=100000",
                           "--checkpoint_minutes=0"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  started = time.monotonic()
  for line in proc.stderr:  # training has begun once it says how it runs
    if "models x 100000 epochs" in line or time.monotonic() - started > 120:
      break
  time.sleep(1.0)
  proc.send_signal(signal.SIGINT)
  rest = proc.stderr.read()
  assert proc.wait(timeout=120) == 130, rest[-3000:]
  assert "Traceback" not in rest
  last = rest.strip().splitlines()[-1]
  assert last.startswith("stopped by Ctrl-C (SIGINT); saved: the training state after epoch ")
  assert (out / "moons_w4" / "checkpoint.npz").is_file()
  assert not (out / "moons_w4" / "zoo.json").exists()


def test_an_analysis_stopped_by_ctrl_c_keeps_what_it_finished(tmp_path, uninterrupted):
  zoo = tmp_path / "moons_w4"
  shutil.copytree(uninterrupted["dir"], zoo)
  args = [f"--zoo={zoo}", "--align=weight,activation", f"--figures={tmp_path / 'figures'}"]
  line = signalled("write:barrier.json#2", "SIGINT", tmp_path, *args, module="barrier")
  assert line == (f"stopped by Ctrl-C (SIGINT); saved: {zoo / BARRIER_JSON}, with the curves "
                  "of naive. Run the same command again to continue from there.")
  assert not list(zoo.glob(".*.tmp"))
  kept = json.loads((zoo / BARRIER_JSON).read_text())
  assert "naive" in kept and not kept["methods"]
  r = run_cli("barrier", *args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert set(json.loads((zoo / BARRIER_JSON).read_text())["methods"]) == {"weight", "activation"}


def test_a_second_signal_stops_at_once():
  stopping.forget_saved()
  with stopping.deferred():
    stopping._on_signal(signal.SIGTERM, None)  # recorded: the code stops at its boundary
    assert stopping.stop_asked()
    with pytest.raises(stopping.Stopped) as e:
      stopping._on_signal(signal.SIGINT, None)
  assert e.value.exit_status == 130 and not stopping.stop_asked()
  with pytest.raises(stopping.Stopped):  # outside a deferred block: at once
    stopping._on_signal(signal.SIGTERM, None)
  assert "before anything was saved" in stopping.stop_message(e.value)
