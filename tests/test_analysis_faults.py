"""Analyses under faults: a run stopped part way keeps what it finished and goes on from
there; the entry points refuse an output folder they cannot write, and a damaged zoo.json
or barrier.json, before any work and in one line, changing nothing; figures leave out
non-finite and huge values and say how many."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lmc_jax.analysis import barrier as barrier_mod
from lmc_jax.analysis.barrier import ZooBarriers, analyse_zoo, read_barrier_json
from lmc_jax.analysis.swa import SwaResult
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.barrier_records import BarrierResult, MethodEntry, RepairEntry
from lmc_jax.config import default_config
from lmc_jax.lmc.interpolation import Curves
from lmc_jax.lmc.loss_plane import PlaneGrid
from lmc_jax.lmc.measures import curve_set
from lmc_jax.report import figures, method_figures
from lmc_jax.result_files import BARRIER_JSON, ZOO_JSON
from lmc_jax.study_records import SwaRecord
from tests.helpers import saved_moons_zoo, zoo_record
from tests.helpers.cli import refused, run_cli, run_module, snapshot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
  """One tiny zoo (3 Moons nets of width 4, 2 epochs) with a barrier.json of weight
  matching; every test works on a copy."""
  d = tmp_path_factory.mktemp("faults") / "moons_w4"
  saved_moons_zoo(d, 4)
  analyse_zoo(d)
  return d


def _copy(pristine, to: Path) -> Path:
  shutil.copytree(pristine, to)
  return to


# -- a run stopped part way -----------------------------------------------------------------

class Killed(BaseException):
  """What a kill looks like to the code it interrupts: nothing after it runs."""


def _content(doc):
  """A barrier.json dict without what differs between two runs of the same work (the
  file's own path: read it as JSON, as a user would)."""
  if isinstance(doc, Path):
    return _content(json.loads((doc / BARRIER_JSON).read_text()))
  if isinstance(doc, dict):
    return {k: _content(v) for k, v in doc.items()
            if "seconds" not in k and k not in ("versions", "zoo")}
  if isinstance(doc, list):
    return [_content(v) for v in doc]
  return doc


@pytest.mark.parametrize("repair", [False, True])
def test_a_killed_analysis_keeps_what_it_finished_and_goes_on(pristine, tmp_path, monkeypatch,
                                                               repair):
  methods = ("weight", "activation", "mergemany")
  whole = _copy(pristine, tmp_path / "whole")
  (whole / BARRIER_JSON).unlink()
  analyse_zoo(whole, methods=methods, repair=repair)
  d = _copy(pristine, tmp_path / "killed")
  (d / BARRIER_JSON).unlink()
  real = barrier_mod.align_by

  def killed_in_the_third(name, *args, **kwargs):
    if name == "mergemany":
      raise Killed
    return real(name, *args, **kwargs)
  monkeypatch.setattr(barrier_mod, "align_by", killed_in_the_third)
  with pytest.raises(Killed):
    analyse_zoo(d, methods=methods, repair=repair)
  kept = read_barrier_json(d, 3)  # whole, and it passes the schema
  assert kept.method_names == ("weight", "activation")
  assert all((kept.repaired(m) is not None) == repair for m in kept.method_names)
  assert kept.curves("aligned") is not None and kept.repaired("naive") is None

  calls = []

  def counting(name, *args, **kwargs):
    calls.append(name)
    return real(name, *args, **kwargs)
  monkeypatch.setattr(barrier_mod, "align_by", counting)
  analyse_zoo(d, methods=methods, repair=repair)
  assert calls == ["mergemany"]  # the first two are not recomputed
  read_barrier_json(d, 3)
  assert _content(d) == _content(whole)


def test_the_naive_curves_are_kept_when_the_first_method_is_killed(pristine, tmp_path,
                                                                    monkeypatch):
  d = _copy(pristine, tmp_path / "z")
  (d / BARRIER_JSON).unlink()

  def killed(*args, **kwargs):
    raise Killed
  monkeypatch.setattr(barrier_mod, "align_by", killed)
  with pytest.raises(Killed):
    analyse_zoo(d)
  kept = read_barrier_json(d, 3)
  assert kept.methods == () and kept.curves("aligned") is None
  assert kept.naive == read_barrier_json(pristine, 3).naive
  assert json.loads((d / BARRIER_JSON).read_text())["methods"] == {}


# -- pre-flight: output folders ---------------------------------------------------------------

def _file(tmp_path) -> Path:
  f = tmp_path / "a_file"
  f.write_text("not a folder\n")
  return f


@pytest.mark.parametrize("module, args, flag", [
    ("barrier", lambda z, f: [f"--zoo={z}", f"--figures={f}"], "--figures"),
    ("swa", lambda z, f: [f"--zoo={z}", f"--figures={f}", "--epochs=2"], "--figures"),
    ("redundancy", lambda z, f: [f"--zoo={z}", f"--figures={f}"], "--figures"),
    ("dynamics", lambda z, f: [f"--zoo={z}", f"--figures={f}"], "--figures"),
    ("reproduce", lambda z, f: [f"--out={f}", f"--runs={z.parent / 'runs'}"], "--out"),
])
def test_an_output_that_is_a_file_is_refused_before_any_work(pristine, tmp_path, module, args,
                                                              flag):
  z, f = _copy(pristine, tmp_path / "moons_w4"), _file(tmp_path)
  before = snapshot(tmp_path)
  refused(run_cli(module, *args(z, f)), f"{flag}={f}", "is a file")
  assert snapshot(tmp_path) == before


def _writable(folder) -> bool:
  try:
    fd, probe = tempfile.mkstemp(dir=folder)
  except OSError:
    return False
  os.close(fd)
  os.unlink(probe)
  return True


def test_an_output_no_one_can_write_isrefused(pristine, tmp_path):
  """/proc takes no new files, even from root (who writes into any read-only folder)."""
  if not Path("/proc").is_dir() or _writable("/proc"):
    pytest.skip("needs /proc, a folder no one can create files in")
  z = _copy(pristine, tmp_path / "moons_w4")
  before = snapshot(tmp_path)
  refused(run_cli("barrier", f"--zoo={z}", "--figures=/proc/lmc_jax_test/figures"),
          "--figures=/proc/lmc_jax_test/figures", "cannot be written")
  assert snapshot(tmp_path) == before


def _bound_by_modes():
  """A command prefix under which folder modes bind: none for a user; for root (who writes
  into read-only folders) `setpriv` dropping the capabilities that override them, or None
  where that is not available."""
  if os.geteuid() != 0:
    return []
  drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
          "--inh-caps=-dac_override,-dac_read_search"]
  try:
    ok = subprocess.run([*drop, "true"], capture_output=True, timeout=30).returncode == 0
  except OSError:
    ok = False
  return drop if ok else None


@pytest.mark.parametrize("module, args, flag", [
    ("barrier", lambda z, ro: [f"--zoo={z}", f"--figures={ro}"], "--figures"),
    ("barrier", lambda z, ro: [f"--zoo={ro}"], "--zoo"),
    ("plane", lambda z, ro: [f"--zoo={ro}"], "--zoo"),
    ("swa", lambda z, ro: [f"--zoo={z}", f"--figures={ro / 'figs'}"], "--figures"),
])
def test_a_read_only_folder_is_refused_before_any_work(pristine, tmp_path, module, args, flag):
  prefix = _bound_by_modes()
  if prefix is None:
    pytest.skip("root writes into read-only folders, and setpriv cannot stop it here")
  z = _copy(pristine, tmp_path / "moons_w4")
  ro = _copy(pristine, tmp_path / "read_only")
  before = snapshot(tmp_path)
  ro.chmod(0o555)
  try:
    refused(run_module(module, *args(z, ro), prefix=prefix), flag, f"{ro}", "cannot be written")
  finally:
    ro.chmod(0o755)
  assert snapshot(tmp_path) == before


# -- damaged files, through the entry points ---------------------------------------------------

def _edit(name, change):
  """A damage: `change(doc)` applied to the JSON file `name` of the zoo."""
  def damage(zoo: Path):
    doc = json.loads((zoo / name).read_text())
    change(doc)
    (zoo / name).write_text(json.dumps(doc))
  return damage


def _cut(name):
  def damage(zoo: Path):
    text = (zoo / name).read_text()
    (zoo / name).write_text(text[: len(text) // 2])
  return damage


def _set_perm(doc):
  doc["methods"]["weight"]["perms"][1]["P_0"] = [0, 0, 1, 2]


def _set_pair(doc):
  doc["naive"]["pairs"][0] = [0, 9]


DAMAGES = [
    # (name, file damaged, damage, entry point, extra flags, words of the error line)
    ("zoo.json cut short", ZOO_JSON, _cut(ZOO_JSON), "barrier", [],
     ["is not a valid zoo description", "--overwrite"]),
    ("diverged not a bool", ZOO_JSON, _edit(ZOO_JSON, lambda d: d["models"][1].update(
        diverged="no")), "barrier", [], ["models[1].diverged is 'no'", "--overwrite"]),
    ("momentum out of range", ZOO_JSON, _edit(ZOO_JSON, lambda d: d["config"]["optim"].update(
        momentum=2.0)), "barrier", [], ["config.optim.momentum must be < 1, got 2.0"]),
    ("lr a string", ZOO_JSON, _edit(ZOO_JSON, lambda d: d["config"]["optim"].update(lr="fast")),
     "swa", ["--epochs=2"], ["config.optim.lr must be a finite number, got 'fast'"]),
    ("arch unknown", ZOO_JSON, _edit(ZOO_JSON, lambda d: d["config"]["model"].update(
        arch="mlpx")), "barrier", [], ["config.model.arch must be one of", "got 'mlpx'"]),
    ("num_models not the config's", ZOO_JSON, _edit(ZOO_JSON, lambda d: d.update(num_models=2)),
     "plane", [], ["num_models is 2 but config.train.num_models is 3"]),
    ("sha not hex", ZOO_JSON, _edit(ZOO_JSON, lambda d: d.update(params_sha256="xyz")),
     "redundancy", [], ["params_sha256 is 'xyz'"]),
    ("models cut short", ZOO_JSON, _edit(ZOO_JSON, lambda d: d["models"].pop()), "dynamics", [],
     ["models has 2 entries but num_models is 3"]),
    ("perm not a permutation", BARRIER_JSON, _edit(BARRIER_JSON, _set_perm), "redundancy", [],
     ["methods.weight.perms[1].P_0 is not a permutation of 0..3", "--recompute"]),
    ("curves cut short", BARRIER_JSON, _edit(BARRIER_JSON, lambda d: d["naive"]["loss"].pop()),
     "redundancy", [], ["naive.loss has 2 entries, expected 3", "--recompute"]),
    ("pair out of range", BARRIER_JSON, _edit(BARRIER_JSON, _set_pair), "redundancy", [],
     ["naive.pairs[0] is 9, outside 0..2"]),
    ("barrier.json cut short", BARRIER_JSON, _cut(BARRIER_JSON), "redundancy", [],
     ["is not readable JSON", "--recompute"]),
]


@pytest.mark.parametrize("name, damaged, damage, module, extra, words", DAMAGES,
                         ids=[c[0] for c in DAMAGES])
def test_a_damaged_file_is_refused_in_one_line_and_nothing_changes(pristine, tmp_path, name,
                                                                   damaged, damage, module,
                                                                   extra, words):
  z = _copy(pristine, tmp_path / "moons_w4")
  damage(z)
  before = snapshot(tmp_path)
  figures_flag = [f"--figures={tmp_path / 'figures'}"] if module != "plane" else []
  line = refused(run_cli(module, f"--zoo={z}", *figures_flag, *extra), str(z / damaged), *words)
  assert line.startswith(f"error: {z / damaged}")
  assert snapshot(tmp_path) == before


def test_the_barrier_entry_point_recomputes_a_damaged_barrier_json(pristine, tmp_path):
  z = _copy(pristine, tmp_path / "moons_w4")
  _edit(BARRIER_JSON, _set_perm)(z)
  r = run_cli("barrier", f"--zoo={z}", f"--figures={tmp_path / 'figures'}")
  assert r.returncode == 0, r.stderr
  assert "methods.weight.perms[1].P_0 is not a permutation of 0..3" in r.stderr
  assert "not reused" in r.stderr
  read_barrier_json(z, 3)
  assert _content(z) == _content(pristine)


# -- figures around non-finite and huge values ---------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
  """Every figure saved, by the path it was saved to."""
  saved = {}
  for module in (figures, method_figures):
    real = module.save_figure

    def keep(fig, path, real=real):
      saved[Path(path).name] = fig
      return real(fig, path)
    monkeypatch.setattr(module, "save_figure", keep)
  return saved


def _texts(fig) -> str:
  """Every title of a figure, its own and its panels', one string."""
  parts = [fig._suptitle.get_text() if fig._suptitle else ""]
  parts += [ax.get_title() for ax in fig.axes]
  return " | ".join(parts)


BAD = [np.nan, np.inf, 1e30]


def test_swa_figures_leave_out_non_finite_and_huge_losses(tmp_path, drawn):
  sample = np.array([0.3, np.nan, 0.25, np.inf, 1e30, 0.2])
  average = np.array([0.3, 0.28, np.nan, 0.26, 1e30, 0.24])
  loss = np.random.default_rng(0).uniform(0.2, 0.4, (15, 11))
  loss[1, 4], loss[2, 2], loss[3, 7] = BAD
  alphas = np.linspace(0, 1, 11)
  entry = curve_set(Curves(alphas, np.zeros((15, 2), int), loss, np.full_like(loss, 0.5)))
  recs = [SwaResult(8, "moons", "moons", SwaRecord(0, 6, 0.05, 0, 0.3, sample, average, alphas,
                                                   entry)),
          SwaResult(16, "moons", "moons", SwaRecord(0, 6, 0.05, 0, np.nan, sample * np.nan,
                                                    average * np.nan, alphas, entry))]
  path = figures.swa_losses(recs, "moons", tmp_path / "swa_losses.png")
  assert path.stat().st_size > 5000
  fig = drawn["swa_losses.png"]
  titles = _texts(fig)
  assert "3 non-finite losses not drawn, 2 beyond the axes" in titles  # width 8
  assert "13 non-finite losses not drawn" in titles  # width 16: every loss
  assert fig.axes[0].get_ylim()[1] < 1  # 1e30 does not squash the others flat
  panels = [figures.CurvePanel(f"width {r.width}", r.swa.alphas, r.swa.samples.loss)
            for r in recs]
  figures.loss_curves(panels, "moons SWA samples", tmp_path / "swa_curves.png")
  titles = _texts(drawn["swa_curves.png"])
  assert "13 pairs;\n2 with non-finite losses not drawn;\n1 leaving the axes" in titles


def test_loss_planes_leave_non_finite_points_blank_and_count_them(tmp_path, drawn):
  xs = np.linspace(-1, 2, 9)
  loss = np.random.default_rng(1).uniform(0.05, 2.0, (9, 9))
  loss[0, 0], loss[4, 4], loss[8, 1] = BAD
  corners = np.array([[0, 0], [1, 0], [0.5, 1.0]])
  good = PlaneGrid(xs, xs, loss, np.full_like(loss, 0.5), corners, np.array([0.1, np.nan, np.inf]))
  empty = PlaneGrid(xs, xs, loss * np.nan, loss, corners * np.nan, np.full(3, np.nan))
  path = figures.loss_planes([good, empty], ["naive", "aligned"], "plane",
                             tmp_path / "plane.png")
  assert path.stat().st_size > 5000
  titles = _texts(drawn["plane.png"])
  assert "2 non-finite points left blank" in titles and "no finite loss" in titles
  figures.loss_planes([empty], ["nothing"], "plane", tmp_path / "empty.png")  # no colour bar


def _record(width, loss, tmp_path):
  alphas = np.linspace(0, 1, loss.shape[1])
  pairs = np.array([[0, 1], [0, 2], [1, 2]])
  curves = curve_set(Curves(alphas, pairs, loss, np.full_like(loss, 0.5)))
  repaired = RepairEntry(64, curves)
  result = BarrierResult(alphas, curves, (
      MethodEntry("weight", seconds=float("nan"), curves=curves, repaired=repaired),
      MethodEntry("activation", seconds=1.0, curves=curves, repaired=repaired)),
      naive_repaired=repaired, reference=0)
  # As barrier.json gives it back: NaN and infinities written as null.
  atomic_write_json(tmp_path / BARRIER_JSON, result.to_json())
  result = BarrierResult.from_json(json.loads((tmp_path / BARRIER_JSON).read_text()),
                                   tmp_path / BARRIER_JSON)
  return ZooBarriers(Path("."), zoo_record(default_config("moons", hidden=(width,))), result)


def test_width_and_method_figures_count_what_they_leave_out(tmp_path, drawn):
  rng = np.random.default_rng(0)
  records = []
  for width in (2, 4):
    loss = rng.uniform(0.1, 1.0, (3, 11))
    loss[1, 5], loss[2, 3], loss[0, 7] = BAD
    records.append(_record(width, loss, tmp_path))
  path = figures.barrier_vs_width(records, "moons", tmp_path / "bvw.png")
  assert path.stat().st_size > 5000
  # naive, aligned and activation, 2 widths, 2 of 3 pairs non-finite each
  assert "12 non-finite barriers not drawn" in _texts(drawn["bvw.png"])
  path = method_figures.comparison_figure(records, ["weight", "activation"], True, "moons",
                                          tmp_path / "methods.png")
  assert path.stat().st_size > 5000
  titles = _texts(drawn["methods.png"])
  assert "(12 non-finite epsilons not drawn)" in titles  # naive, weight, activation x 2 widths
  figures.epsilon_matrices(records, "moons", "aligned", tmp_path / "matrices.png")  # nulls
