"""Results belong to the zoo they were computed from: an analysis holds the zoo directory's
lock before it reads the zoo, so a zoo run with --overwrite can not swap another zoo in
under it; a handle opened before a swap is refused rather than analysed into the new zoo;
readers of barrier.json refuse one whose params checksum is not the zoo's."""
import json
import shutil

import pytest

from lmc_jax.analysis import barrier as barrier_mod
from lmc_jax.analysis.barrier import analyse_zoo, read_barrier_json
from lmc_jax.analysis.redundancy import original_epsilon, redundancy_row
from lmc_jax.config import RunOptions, default_config
from lmc_jax.errors import LmcError
from lmc_jax.result_files import BARRIER_JSON, ZOO_JSON
from lmc_jax.zoo.handle import held_zoo, open_zoo
from lmc_jax.zoo.runs import run_zoo
from tests.helpers.cli import snapshot

OLD = default_config("moons", hidden=(4,), num_models=3, epochs=2, seed=1)
NEW = OLD.replace(seed=0)


def checksum(directory) -> str:
  return json.loads((directory / ZOO_JSON).read_text())["params_sha256"]


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
  root = tmp_path_factory.mktemp("own")
  run_zoo(OLD, root / "old" / "moons_w4")
  analyse_zoo(root / "old" / "moons_w4")
  run_zoo(NEW, root / "new" / "moons_w4")
  return root


def test_the_race_of_issue_26_a_handle_opened_before_an_overwrite_is_refused(tmp_path, zoos):
  """barrier opened the old zoo, then an overwrite swapped a new one in: the old zoo's
  results must not land in the new zoo's barrier.json."""
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos / "old" / "moons_w4", d)
  (d / BARRIER_JSON).unlink()
  handle = open_zoo(d)  # what the barrier command had read before taking the lock
  run_zoo(NEW, d, RunOptions(overwrite=True))  # the overwrite wins the window
  before = snapshot(d)
  with pytest.raises(LmcError, match="holds another zoo than the one this analysis opened"):
    analyse_zoo(handle)
  assert snapshot(d) == before and not (d / BARRIER_JSON).exists()
  result = analyse_zoo(d)  # run again: the new zoo, with its own checksum
  assert result.params_sha256 == checksum(d) == checksum(zoos / "new" / "moons_w4")


def test_an_overwrite_while_an_analysis_reads_the_zoo_is_refused(tmp_path, zoos, monkeypatch):
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos / "old" / "moons_w4", d)
  real = barrier_mod.prepare_job
  tried = []

  def overwrite_meanwhile(zoo, *args, **kwargs):  # between reading the zoo and its data
    with pytest.raises(LmcError, match="in use by another lmc_jax barrier analysis"):
      run_zoo(NEW, d, RunOptions(overwrite=True))
    tried.append(True)
    return real(zoo, *args, **kwargs)
  monkeypatch.setattr(barrier_mod, "prepare_job", overwrite_meanwhile)
  result = analyse_zoo(d, recompute=True)
  assert tried and result.params_sha256 == checksum(d) == checksum(zoos / "old" / "moons_w4")
  assert read_barrier_json(d, 3, checksum(d)).params_sha256 == checksum(d)


def test_held_zoo_reopens_a_record_read_before_a_swap_and_nests(tmp_path, zoos):
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos / "old" / "moons_w4", d)
  stale = open_zoo(d).record
  run_zoo(NEW, d, RunOptions(overwrite=True))
  with held_zoo(d, "test", stale) as zoo:  # the record is read again under the lock
    assert zoo.record.params_sha256 == checksum(d)
    with held_zoo(zoo, "test") as again:  # the same process holds it again: nests
      assert again is zoo
    with pytest.raises(LmcError, match="in use by another lmc_jax test"):
      run_zoo(OLD, d, RunOptions(overwrite=True))


def test_readers_refuse_a_barrier_json_of_other_params(tmp_path, zoos):
  """The file the race used to write: the new zoo beside the old zoo's barrier.json."""
  d = tmp_path / "moons_w4"
  shutil.copytree(zoos / "new" / "moons_w4", d)
  shutil.copy(zoos / "old" / "moons_w4" / BARRIER_JSON, d / BARRIER_JSON)
  before = snapshot(d)
  with pytest.raises(LmcError, match="computed from other params than the zoo now in"):
    original_epsilon(d, 3, checksum(d))
  with pytest.raises(LmcError, match="--recompute"):
    redundancy_row(d)
  assert snapshot(d) == before
  assert original_epsilon(zoos / "old" / "moons_w4", 3, checksum(zoos / "old" / "moons_w4"))
  result = analyse_zoo(d)  # the analysis recomputes it rather than reusing it
  assert result.params_sha256 == checksum(d)


# The other analyses' library functions hold the lock themselves, as analyse_zoo does.
def _analysis(name, d, out):
  """(module to patch, its data-loading step's name, the call) of each analysis on `d`."""
  from lmc_jax.analysis import groups, plane, swa
  return {"swa": (swa, "swa", lambda: swa.swa_zoo(d, model=0, epochs=2)),
          "plane": (plane, "plane_grid",
                    lambda: plane.plane_zoo(d, resolution=2, max_iter=2)),
          "dynamics": (groups, "group_epsilon_matrices",
                       lambda: groups.compare_groups([d, out], "g", out.parent, max_iter=2))
          }[name]


@pytest.mark.parametrize("name,kind", [("swa", "SWA analysis"),
                                       ("plane", "loss-plane analysis"),
                                       ("dynamics", "dynamics analysis")])
def test_each_analysis_library_call_holds_the_lock(tmp_path, zoos, monkeypatch, name, kind):
  d = tmp_path / "moons_w4"
  other = tmp_path / "second" / "moons_w4"
  shutil.copytree(zoos / "old" / "moons_w4", d)
  shutil.copytree(zoos / "new" / "moons_w4", other)
  module, step, call = _analysis(name, d, other)
  real = getattr(module, step)
  tried = []

  def overwrite_meanwhile(*args, **kwargs):  # in the middle of the analysis
    with pytest.raises(LmcError, match=f"in use by another lmc_jax {kind}"):
      run_zoo(NEW, d, RunOptions(overwrite=True))
    tried.append(True)
    return real(*args, **kwargs)
  monkeypatch.setattr(module, step, overwrite_meanwhile)
  call()
  assert tried and checksum(d) == checksum(zoos / "old" / "moons_w4")


@pytest.mark.parametrize("name", ["swa", "plane", "dynamics"])
def test_each_analysis_refuses_a_handle_opened_before_an_overwrite(tmp_path, zoos, name):
  d = tmp_path / "moons_w4"
  other = tmp_path / "second" / "moons_w4"
  shutil.copytree(zoos / "old" / "moons_w4", d)
  shutil.copytree(zoos / "new" / "moons_w4", other)
  handle = open_zoo(d)
  run_zoo(NEW, d, RunOptions(overwrite=True))
  before = snapshot(d)
  _, _, call = _analysis(name, handle, other)
  with pytest.raises(LmcError, match="holds another zoo than the one this analysis opened"):
    call()
  assert snapshot(d) == before
