"""A zoo is never lost and never silently wrong: runs killed (SIGKILL) at exact moments of
training, writing and swapping leave a directory that holds the old zoo or the new one,
whole, and the same command then ends with exactly the zoo an uninterrupted run writes.

The runs that are killed, and the uninterrupted reference, are processes; the runs that
finish after them run in this process (`run_cli`: the same command, its compiled functions
shared with the other tests), so each resumed zoo is also checked against one written by
another process."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmc_jax import atomic_files, crash_points, preflight
from lmc_jax.config import RunOptions, default_config
from lmc_jax.dir_lock import DirLock
from lmc_jax.errors import LmcError
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.runs import run_zoo
from tests.helpers.cli import ROOT, refused, run_cli, run_module, snapshot

NEW = ["--width=4", "--num_models=3", "--epochs=8", "--checkpoint_every=2"]
OLD = ["--width=4", "--num_models=3", "--epochs=8", "--seed=1"]  # same directory, other zoo


def killed_at(point: str, out: Path, *args):
  r = run_module("zoo", f"--out={out}", *args, env={crash_points.ENV: point})
  assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-2000:])
  return r


def ok(out: Path, *args, process: bool = False):
  """The zoo command on `args`, finished: in this process, or (`process`) as a process."""
  r = (run_module if process else run_cli)("zoo", f"--out={out}", *args)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def zoo_bytes(directory: Path) -> dict:
  """What must not differ between two runs of one command: params and history bit for bit,
  zoo.json but for the time it took."""
  doc = json.loads((directory / "zoo.json").read_text())
  doc.pop("train_seconds")
  return {"params": (directory / "params.npz").read_bytes(),
          "history": (directory / "history.npz").read_bytes(), "doc": doc}


def no_leftovers(out: Path):
  left = [p.name for p in out.rglob(".*") if p.name.endswith(".tmp") or ".new-" in p.name
          or ".old-" in p.name or p.name == "checkpoint.npz"]
  assert not left, left


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run of NEW, and a zoo of OLD to overwrite."""
  root = tmp_path_factory.mktemp("reference")
  ok(root / "new", *NEW, process=True)
  ok(root / "old", *OLD, process=True)
  return {"new": zoo_bytes(root / "new" / "moons_w4"), "old_dir": root / "old" / "moons_w4"}


def config_of(directory: Path):
  return open_zoo(directory).config


def test_a_first_run_killed_again_and_again_resumes_to_the_uninterrupted_zoo(tmp_path,
                                                                           reference):
  """Killed after a checkpoint, then (resuming) mid-checkpoint write, mid params.npz write
  and after the zoo is staged: each time no zoo, and none half-written; then the same
  command ends with the uninterrupted zoo."""
  out = tmp_path / "runs"
  # (where it is killed, the checkpoint it resumes from: a killed checkpoint write keeps
  # the one before; a run killed while saving its zoo has checkpointed epochs 4 and 6)
  for point, resumes in (("zoo:checkpoint#1", None), ("write:checkpoint.npz#1", 2),
                         ("write:params.npz", 2), ("zoo:staged", 6)):
    r = killed_at(point, out, *NEW)
    assert not (out / "moons_w4" / "zoo.json").exists(), point
    if resumes:
      assert f"resuming from {out / 'moons_w4' / 'checkpoint.npz'} after epoch {resumes} of 8" \
          in r.stderr, point
  ok(out, *NEW)
  assert zoo_bytes(out / "moons_w4") == reference["new"]
  no_leftovers(out)


def test_an_overwrite_killed_again_and_again_leaves_the_old_or_the_new_zoo_whole(tmp_path,
                                                                               reference):
  out = tmp_path / "runs"
  shutil.copytree(reference["old_dir"], out / "moons_w4")
  for point, holds in (("zoo:checkpoint#2", "old"), ("write:zoo.json", "old"),
                       ("zoo:staged", "old"), ("swap:exchanged", "new")):
    killed_at(point, out, *NEW, "--overwrite")
    seed = config_of(out / "moons_w4").train.seed  # it loads, checksum and shapes checked
    assert seed == {"old": 1, "new": 0}[holds], point
  ok(out, *NEW, "--overwrite")
  assert zoo_bytes(out / "moons_w4") == reference["new"]
  no_leftovers(out)


def test_kills_at_random_moments_then_the_same_command_finishes_the_same_zoo(tmp_path,
                                                                              reference):
  out = tmp_path / "runs"
  rng = np.random.default_rng(0)
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  for _ in range(2):
    proc = subprocess.Popen([sys.executable, "-m", "experiments.zoo", f"--out={out}", *NEW,
                             "--checkpoint_every=1"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(2.0, 4.5))  # start-up is about 2.5 s, training about 1 s
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "moons_w4" / "zoo.json").exists():
      assert config_of(out / "moons_w4").train.seed == 0
  ok(out, *NEW)
  assert zoo_bytes(out / "moons_w4") == reference["new"]
  no_leftovers(out)


def test_reuse_checks_the_zoo_and_trains_a_damaged_one_again(tmp_path, reference):
  config = default_config("moons", hidden=(4,), num_models=3, epochs=8)
  directory = tmp_path / "moons_w4"
  run_zoo(config, directory)
  assert zoo_bytes(directory) == reference["new"]  # in this process as in a fresh one
  npz = directory / "params.npz"
  for damage in (lambda b: b[:len(b) // 2], lambda b: b[:200] + bytes([b[200] ^ 1]) + b[201:],
                 lambda b: (reference["old_dir"] / "params.npz").read_bytes()):
    npz.write_bytes(damage(npz.read_bytes()))
    run_zoo(config, directory)
    assert zoo_bytes(directory) == reference["new"]
  npz.unlink()
  run_zoo(config, directory)
  assert zoo_bytes(directory) == reference["new"]

  (directory / "zoo.json").write_text("{not json")
  before = snapshot(directory)
  with pytest.raises(LmcError, match="cannot be read.*--overwrite"):
    run_zoo(config, directory)
  assert snapshot(directory) == before
  run_zoo(config, directory, RunOptions(overwrite=True))  # whatever state it is in
  assert zoo_bytes(directory) == reference["new"]


def test_a_damaged_or_foreign_checkpoint_is_ignored_and_training_starts_over(tmp_path,
                                                                            reference, caplog):
  out = tmp_path / "runs"
  killed_at("zoo:checkpoint#2", out, *NEW)
  ckpt = out / "moons_w4" / "checkpoint.npz"
  good = ckpt.read_bytes()
  ckpt.write_bytes(good[:-300] + bytes(300))
  r = ok(out, *NEW)
  assert "is not used" in r.stderr and "resuming" not in r.stderr
  assert zoo_bytes(out / "moons_w4") == reference["new"]

  shutil.rmtree(out / "moons_w4")
  killed_at("zoo:checkpoint#2", out, *NEW)
  r = ok(out, *NEW[:-2], "--epochs=10")  # another config: its checkpoint is not this run's
  assert "written for another config" in r.stderr
  assert json.loads((out / "moons_w4" / "zoo.json").read_text())["config"]["train"]["epochs"] == 10


def test_a_non_zoo_folder_keeps_its_files_when_a_zoo_is_written_into_it(tmp_path, reference):
  out = tmp_path / "runs"
  (out / "moons_w4" / "notes").mkdir(parents=True)
  (out / "moons_w4" / "README.txt").write_text("mine")
  (out / "moons_w4" / "notes" / "a.txt").write_text("also mine")
  refused(run_cli("zoo", f"--out={out}", *NEW), "is not a zoo", "README.txt", "--overwrite")
  ok(out, *NEW, "--overwrite")
  assert zoo_bytes(out / "moons_w4") == reference["new"]
  assert (out / "moons_w4" / "README.txt").read_text() == "mine"
  assert (out / "moons_w4" / "notes" / "a.txt").read_text() == "also mine"


def test_one_run_per_zoo_directory(tmp_path, reference):
  out = tmp_path / "runs"
  shutil.copytree(reference["old_dir"], out / "moons_w4")
  before = snapshot(out)
  with DirLock(out / "moons_w4", "test"):
    line = refused(run_module("zoo", f"--out={out}", *OLD), "in use by another lmc_jax",
                   f"pid {os.getpid()}")
    assert "wait for it to finish" in line
    with pytest.raises(LmcError, match="in use"):  # also within one process
      with DirLock(out / "moons_w4"):
        pass
  assert snapshot(out) == before  # the holder's note goes with the lock
  r = ok(out, *OLD)
  assert "reusing" in r.stderr


def test_preflight_refuses_before_any_training(tmp_path, monkeypatch):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  refused(run_cli("zoo", f"--out={a_file}", "--width=4"), f"--out={a_file}", "is a file")
  refused(run_cli("zoo", f"--out={a_file / 'runs'}", "--width=4"), "lies under the file")
  big = refused(run_cli("zoo", f"--out={tmp_path / 'big'}", "--width=1000000000",
                        "--dataset=mnist"), "needs about", "TiB", "--width", "--num_models")
  assert "hidden widths [1000000000, 1000000000, 1000000000]" in big
  assert not (tmp_path / "big").exists()
  assert a_file.read_text() == "x"

  # A disk without room, and a folder that cannot be written (as root, permissions do not
  # stop writes, so the probe's failure is simulated).
  monkeypatch.setattr(preflight, "free_bytes", lambda path: 10 << 20)
  with pytest.raises(LmcError, match=r"has 10.0 MiB free but 2 zoos needs about 1.0 GiB"):
    preflight.check_disk_room(tmp_path, 1 << 30, "2 zoos")

  def no_write(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(preflight.tempfile, "mkstemp", no_write)
  with pytest.raises(LmcError, match="cannot be written.*Permission denied"):
    preflight.check_output_dir(tmp_path / "sub", "--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_output_is_refused_before_training(tmp_path):
  out = tmp_path / "ro"
  out.mkdir()
  out.chmod(0o555)
  try:
    refused(run_module("zoo", f"--out={out}", "--width=4"), "cannot be written")
  finally:
    out.chmod(0o755)


def test_the_swap_without_an_atomic_exchange_recovers_after_a_kill(tmp_path, monkeypatch):
  """Where the OS cannot exchange two directories, the old one is renamed aside first; a
  kill between the two renames leaves the target missing, and recovery puts back the new
  zoo (or, if it is not whole, the old one)."""
  def whole(path):
    return (path / "zoo.json").is_file()

  class Killed(BaseException):
    pass

  def crash(name):
    if name == "swap:aside":
      raise Killed
  monkeypatch.setattr(atomic_files, "crash_point", crash)
  for new_is_whole, expect in ((True, "new"), (False, "old")):
    target = tmp_path / f"zoo_{expect}"
    target.mkdir()
    (target / "zoo.json").write_text("old")
    staged = atomic_files.aside_name(target, "new")
    staged.mkdir()
    if new_is_whole:
      (staged / "zoo.json").write_text("new")
    with pytest.raises(Killed):
      atomic_files.replace_directory(staged, target, exchange=lambda a, b: False)
    assert not target.exists()
    assert atomic_files.recover_directory(target, whole)
    assert (target / "zoo.json").read_text() == expect
    atomic_files.remove_stale_asides(target)
    assert not list(tmp_path.glob(f".{target.name}.*"))


def test_an_analysis_killed_while_saving_keeps_a_whole_barrier_json_and_finishes(tmp_path,
                                                                              reference):
  """experiments.barrier killed (SIGKILL) mid-write of its second save: barrier.json holds
  the first (the naive curves) whole; the same command then adds the rest and equals an
  uninterrupted analysis."""
  zoo = tmp_path / "moons_w4"
  shutil.copytree(reference["old_dir"], zoo)
  args = [f"--zoo={zoo}", "--align=weight,activation", f"--figures={tmp_path / 'figures'}"]
  r = run_module("barrier", *args, env={crash_points.ENV: "write:barrier.json#2"})
  assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
  partial = json.loads((zoo / "barrier.json").read_text())
  assert "naive" in partial and not partial["methods"]
  r = run_cli("barrier", *args)
  assert r.returncode == 0, r.stderr[-2000:]
  assert not list(zoo.glob(".*.tmp"))
  resumed = json.loads((zoo / "barrier.json").read_text())
  whole = tmp_path / "whole"
  shutil.copytree(reference["old_dir"], whole)
  r = run_cli("barrier", f"--zoo={whole}", "--align=weight,activation",
              f"--figures={tmp_path / 'figures2'}")
  assert r.returncode == 0, r.stderr[-2000:]
  uninterrupted = json.loads((whole / "barrier.json").read_text())
  for doc in (resumed, uninterrupted):
    doc.pop("seconds", None), doc.pop("zoo", None)
    for entry in doc["methods"].values():
      entry.pop("seconds", None), entry.pop("sweep_seconds", None)
  assert resumed == uninterrupted


def test_a_checkpoint_taken_with_other_test_evaluations_is_not_resumed(tmp_path):
  """--eval_every is not part of the config, so a checkpoint records which epochs it
  evaluated; a rerun with another --eval_every starts over rather than mixing them."""
  out = tmp_path / "runs"
  killed_at("zoo:checkpoint#2", out, *NEW, "--eval_every=2")  # evaluated after 2 and 4
  r = ok(out, *NEW, "--eval_every=3")
  assert "not the [3] this run's --eval_every=3 makes" in r.stderr and "resuming" not in r.stderr
  with np.load(out / "moons_w4" / "history.npz") as h:
    assert h["eval_epoch"].tolist() == [3, 6, 8]
