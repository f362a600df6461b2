"""A disk that fills during a run (after the pre-flight check passed): the write that fails
ends in one sentence naming the path and the space needed, nothing staged is left behind,
and the zoo or result that was there before keeps its bytes. The disk is filled by
replacing the atomic writer's file with one that refuses writes past a budget."""
import errno
import os
import shutil

import numpy as np
import pytest

from lmc_jax import atomic_files
from lmc_jax.analysis.barrier import analyse_zoo
from lmc_jax.cli.common import exit_on_lmc_error
from lmc_jax.config import RunOptions, default_config
from lmc_jax.errors import DiskFullError
from lmc_jax.report.figures import new_figure, save_figure
from lmc_jax.result_files import BARRIER_JSON
from lmc_jax.zoo.runs import run_zoo
from tests.helpers.cli import snapshot
from tests.test_zoo_faults import zoo_bytes

NEW = default_config("moons", hidden=(4,), num_models=3, epochs=4)
OLD = NEW.replace(seed=1)


class _Filling:
  """A file that takes `budget` more bytes, then fails as a full disk does."""

  def __init__(self, f, disk):
    self._f, self._disk = f, disk

  def write(self, data):
    if len(data) > self._disk.budget:
      raise OSError(errno.ENOSPC, "No space left on device")
    self._disk.budget -= len(data)
    return self._f.write(data)

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


class FullDisk:
  """Fills while the file named `name` is written, after `budget` bytes of it."""

  def __init__(self, monkeypatch, name: str, budget: int = 0):
    self.name, self.budget, self.real = name, budget, atomic_files._open_for_writing
    monkeypatch.setattr(atomic_files, "_open_for_writing", self.open)

  def open(self, fd):
    f = self.real(fd)
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{self.name}."):
      return _Filling(f, self)
    return f


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
  root = tmp_path_factory.mktemp("disk")
  run_zoo(NEW, root / "new" / "moons_w4")
  run_zoo(OLD, root / "old" / "moons_w4")
  analyse_zoo(root / "old" / "moons_w4")
  return {"new": zoo_bytes(root / "new" / "moons_w4"), "old": root / "old" / "moons_w4"}


@pytest.mark.parametrize("name,budget", [("checkpoint.npz", 100), ("history.npz", 0),
                                         ("params.npz", 1000), ("zoo.json", 10)])
def test_an_overwrite_on_a_full_disk_keeps_the_old_zoo(tmp_path, monkeypatch, zoos, name,
                                                       budget):
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos["old"], d)
  before = snapshot(tmp_path, folders=True)
  FullDisk(monkeypatch, name, budget)
  with pytest.raises(DiskFullError) as e:
    run_zoo(NEW, d, RunOptions(overwrite=True, checkpoint_every=2))
  message = str(e.value)
  assert message.startswith("No space left on the disk for ") and name in message
  assert "needs about " in message and message.count(".") >= 1
  after = snapshot(tmp_path, folders=True)
  # No staging, no temporary, the old zoo whole; a disk that fills when the zoo is saved
  # keeps the checkpoint of epoch 2 beside it, which the rerun continues from.
  assert (after.pop("moons_w4/checkpoint.npz", None) is not None) == (name != "checkpoint.npz")
  assert after == before
  monkeypatch.undo()
  run_zoo(NEW, d, RunOptions(overwrite=True))  # space again: the same command finishes
  assert zoo_bytes(d) == zoos["new"]


def test_a_full_disk_keeps_the_previous_barrier_json(tmp_path, monkeypatch, zoos):
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos["old"], d)
  before = snapshot(d)
  FullDisk(monkeypatch, BARRIER_JSON)
  with pytest.raises(DiskFullError, match=f"for {d / BARRIER_JSON}: it needs about"):
    analyse_zoo(d, recompute=True)
  assert snapshot(d) == before


def test_a_figure_on_a_full_disk_is_not_left_half_written(tmp_path, monkeypatch):
  fig, ax = new_figure(1, 1, (2, 2))
  ax[0, 0].plot(np.arange(3))
  FullDisk(monkeypatch, "curves.png", 100)
  with pytest.raises(DiskFullError, match="curves.png"):
    save_figure(fig, tmp_path / "curves.png")
  assert not list(tmp_path.iterdir())


def test_the_entry_points_say_it_in_one_line(capsys):
  """A full disk met outside the atomic writes (a folder made, a file copied)."""
  def main(argv):
    raise OSError(errno.ENOSPC, "No space left on device", "/scratch/runs/moons_w4")
  with pytest.raises(SystemExit) as e:
    exit_on_lmc_error(main)([])
  assert e.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: No space left on the disk for /scratch/runs/moons_w4")

  def other(argv):
    raise OSError(errno.EIO, "I/O error")
  with pytest.raises(OSError):  # any other failure keeps its traceback
    exit_on_lmc_error(other)([])
