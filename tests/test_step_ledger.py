"""Resuming a reproduction: which steps the ledger keeps and which run again, on
hand-made steps that write files (no entry point runs here)."""
from pathlib import Path

import pytest

from lmc_jax.errors import LmcError
from lmc_jax.report.step_ledger import Ledger, run_or_keep

ZOO = ["zoo", "--out=runs/moons"]
SUMMARY = ["zoo", "--width=8", "--out=runs/moons"]  # a second zoo step in the same folder
BARRIER = ["barrier", "--runs=runs/moons", "--figures=fig"]
PLANE = ["plane", "--zoo=runs/other"]


class Steps:
  """Hand-made steps: each call writes its files and counts how often it ran."""

  def __init__(self, root: Path):
    self.root, self.ran, self.content = root, [], {"zoo": "params-1"}

  def __call__(self, argv, code=0):
    def run():
      self.ran.append(argv[0] if argv is not SUMMARY else "summary")
      files = {"zoo": {"runs/moons/w4/params.npz": self.content["zoo"],
                       "runs/moons/summary.csv": "w4"},
               "summary": {"runs/moons/w8/params.npz": "p8", "runs/moons/summary.csv": "w4,w8"},
               "barrier": {"fig/eps.csv": "eps", "runs/moons/w4/barrier.json": "b"},
               "plane": {"runs/other/plane.png": "png"}}[self.ran[-1]]
      for name, text in files.items():
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_text(text)
      return code
    return run


def _invoke(tmp_path, steps, commands):
  """One reproduction run over `commands`; returns the commands that ran."""
  ledger, fresh = Ledger(tmp_path / "steps.json"), {}
  before = len(steps.ran)
  for argv in commands:
    record, _ = run_or_keep(ledger, argv, fresh, steps(argv))
    if record.status != "ok":
      break
  return steps.ran[before:]


@pytest.fixture
def here(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the steps' paths are relative, as the presets' are
  return tmp_path


def test_a_finished_step_is_kept_with_its_record(here):
  steps = Steps(here)
  assert _invoke(here, steps, [ZOO, BARRIER]) == ["zoo", "barrier"]
  first = Ledger(here / "steps.json").records
  assert _invoke(here, steps, [ZOO, BARRIER]) == []
  assert Ledger(here / "steps.json").records == first  # seconds and times as they were
  assert set(first[0].outputs) == {"runs/moons/w4/params.npz", "runs/moons/summary.csv"}
  assert set(first[1].outputs) == {"fig/eps.csv", "runs/moons/w4/barrier.json"}


def test_another_command_runs(here):
  steps = Steps(here)
  _invoke(here, steps, [ZOO, PLANE])
  assert _invoke(here, steps, [ZOO, PLANE + ["--models=0,1,3"]]) == ["plane"]


def test_a_damaged_or_missing_output_runs_its_step_again(here):
  steps = Steps(here)
  _invoke(here, steps, [ZOO, BARRIER, PLANE])
  (here / "fig/eps.csv").write_text("edited")
  assert _invoke(here, steps, [ZOO, BARRIER, PLANE]) == ["barrier"]
  (here / "runs/other/plane.png").unlink()
  assert _invoke(here, steps, [ZOO, BARRIER, PLANE]) == ["plane"]


def test_a_file_a_later_step_rewrote_is_not_damage(here):
  steps = Steps(here)
  assert _invoke(here, steps, [ZOO, SUMMARY]) == ["zoo", "summary"]
  assert _invoke(here, steps, [ZOO, SUMMARY]) == []  # summary.csv is the second step's now


def test_a_step_reading_what_ran_again_runs_again(here):
  steps = Steps(here)
  _invoke(here, steps, [ZOO, BARRIER, PLANE])
  (here / "runs/moons/w4/params.npz").unlink()  # the zoo trains again, to other params
  steps.content["zoo"] = "params-2"
  assert _invoke(here, steps, [ZOO, BARRIER, PLANE]) == ["zoo", "barrier"]
  (here / "runs/moons/w4/params.npz").unlink()  # trained again to the same bytes
  assert _invoke(here, steps, [ZOO, BARRIER, PLANE]) == ["zoo"]


def test_a_failed_step_stops_the_run_and_runs_next_time(here):
  steps = Steps(here)
  ledger, fresh = Ledger(here / "steps.json"), {}
  record, ran = run_or_keep(ledger, ZOO, fresh, steps(ZOO, code=3))
  assert (record.status, ran) == ("failed (3)", True)
  assert _invoke(here, steps, [ZOO, BARRIER]) == ["zoo", "barrier"]


def test_a_damaged_ledger_is_refused_in_one_sentence(here):
  (here / "steps.json").write_text("{not json")
  with pytest.raises(LmcError, match="delete it to run every step again"):
    Ledger(here / "steps.json")
