"""Files written by earlier versions (tests/data/legacy, see its README) load with today's
code and give the tables their version printed, digit for digit: zoo.json format 1 (a flat
config, params stored without their collection), barrier.json format 4 (no orthogonal
maps), format 2 (weight matching's curves as "aligned", REPAIR's as "<name>+repair") and
format 1. `experiments.barrier` keeps every entry of a format-2 or format-4 file and writes
it again in today's format; a format-1 file it recomputes, to the same numbers."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmc_jax.analysis.barrier import read_barrier_json, zoo_barriers
from lmc_jax.barrier_records import BarrierResult
from lmc_jax.report import connectivity as conn
from lmc_jax.report.tables import ZOO_COLUMNS, format_table, zoo_row
from lmc_jax.result_files import BARRIER_FORMAT, BARRIER_JSON, ZOO_JSON
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.symmetry.spec import perm_sizes
from lmc_jax.tree_utils import flatten
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.io import read_zoo_json
from tests.helpers.cli import ROOT, run_cli

LEGACY = Path(__file__).parent / "data" / "legacy"
# folder -> (family label, methods aligned, diagnostics measured, entry-point flags)
WRITTEN = {
    "moons_w4": ("moons", ["weight", "activation", "mergemany"], True, []),
    # BatchNorm lets a filter flip with its running mean and scale: the file's entries were
    # plain permutations, which --signs=false asks for.
    "mnist_vgg_small_w1": ("mnist_vgg_small", ["weight", "activation", "mergemany"], True,
                           [f"--data_dir={ROOT / 'data'}", "--signs=false"]),
    "format1_moons_w4": ("moons", ["weight", "activation"], False, []),
}


def blocks(text: str) -> list:
  """The tables of printed output, each its header, rule and rows (titles, log lines and
  the figures line left out)."""
  out = []
  for line in text.splitlines():
    if line.startswith(("width", "-----")) or line.startswith(" "):
      if line.startswith("width"):
        out.append([])
      out[-1].append(line)
  return out


def without(table: list, header: str) -> list:
  """`table` (lines of `format_table`) without the column headed `header`: a column the
  version that wrote the file did not print yet."""
  start = table[0].index(header) - 2
  end = table[0].index(header) + len(header)
  return [line[:start] + line[end:] for line in table]


@pytest.mark.parametrize("name", list(WRITTEN))
def test_a_legacy_zoo_loads_and_gives_its_table(name):
  d = LEGACY / name
  doc = json.loads((d / ZOO_JSON).read_text())
  loaded = open_zoo(d)  # checksum and every leaf's shape against today's network
  record = loaded.record
  assert "model" not in doc["config"]  # flat: written before the config had sections
  assert record.config.model.hidden[0] == doc["config"]["hidden"][0]
  assert record.num_models == doc["num_models"] and record.params_sha256 == doc["params_sha256"]
  assert [m.test_loss for m in record.models] == [m["test_loss"] for m in doc["models"]]
  # Stored without their collection ('Dense_0/kernel'), the params are read as 'params/...'.
  assert {k.split("/")[0] for k in flatten(loaded.variables)} <= {"params", "batch_stats"}
  table = format_table([zoo_row(record)], ZOO_COLUMNS).splitlines()
  old = blocks((d / "zoo_table.txt").read_text())[0]
  assert (table if "collapsed" in old[0] else without(table, "collapsed")) == old


@pytest.mark.parametrize("name", list(WRITTEN))
def test_a_legacy_barrier_json_gives_the_tables_its_version_printed(name, tmp_path):
  d = LEGACY / name
  label, methods, diagnostics, _ = WRITTEN[name]
  loaded = open_zoo(d)
  doc = json.loads((d / BARRIER_JSON).read_text())
  assert doc.get("format", 1) in (1, 2) and "aligned" in doc
  # Every permutation fits the network today's code derives for the zoo.
  sizes = perm_sizes(spec_for_config(loaded.config), loaded.variables, batch_dims=1)
  assert loaded.spec.axes_to_perm == spec_for_config(loaded.config).axes_to_perm
  result = BarrierResult.from_json(doc, d / BARRIER_JSON, loaded.record.num_models, sizes)
  assert result == read_barrier_json(d, loaded.record.num_models)
  assert result.method_names == tuple(methods)
  assert result.curves("aligned").epsilon.tolist() == doc["aligned"]["epsilon"]
  assert result.curves("activation", repaired=True).loss.tolist() == \
      doc["methods"]["activation+repair"]["loss"]
  assert result.curves("naive", repaired=True).epsilon.tolist() == \
      doc["methods"]["naive+repair"]["epsilon"]
  rep = conn.report_family(label, [zoo_barriers(d, result)], tmp_path, methods, repair=True)
  tables = [format_table(rep.epsilon_rows, conn.EPSILON_COLUMNS, conn.EPSILON_HEADERS),
            format_table(rep.method_rows, conn.COMPARISON_COLUMNS, conn.COMPARISON_HEADERS)]
  if diagnostics:
    tables.append(format_table(rep.diagnostic_rows, conn.DIAGNOSTIC_COLUMNS,
                               conn.DIAGNOSTIC_HEADERS))
  tables = [t.splitlines() for t in tables]
  old = blocks((d / "barrier_tables.txt").read_text())
  if "with collapsed" not in old[0][0]:  # format 1's version did not count collapsed pairs
    tables[0] = without(tables[0], "with collapsed")
  assert tables == old


def _barrier_cli(zoo: Path, name: str, tmp_path):
  label, methods, diagnostics, flags = WRITTEN[name]
  return run_cli("barrier", f"--zoo={zoo}", f"--align={','.join(methods)}", "--repair",
                 *(["--diagnostics"] if diagnostics else []), *flags,
                 f"--figures={tmp_path / 'figures'}")


@pytest.mark.parametrize("name", ["moons_w4", "mnist_vgg_small_w1"])
def test_the_entry_point_keeps_a_format_2_file_and_writes_it_in_todays_format(name, tmp_path):
  zoo = shutil.copytree(LEGACY / name, tmp_path / name)
  before = read_barrier_json(zoo)
  r = _barrier_cli(zoo, name, tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"kept the {', '.join(WRITTEN[name][1])} results already in barrier.json" in r.stderr
  assert blocks(r.stdout) == blocks((zoo / "barrier_tables.txt").read_text())
  doc = json.loads((zoo / BARRIER_JSON).read_text())
  assert doc["format"] == BARRIER_FORMAT and "aligned" not in doc
  assert not any(key.endswith("+repair") for key in doc["methods"])
  after = read_barrier_json(zoo)
  assert dataclasses.replace(after, versions=before.versions) == before  # nothing else moved


def test_the_entry_point_recomputes_a_format_1_file_to_the_same_numbers(tmp_path):
  name = "format1_moons_w4"
  zoo = shutil.copytree(LEGACY / name, tmp_path / name)
  before = read_barrier_json(zoo)
  r = _barrier_cli(zoo, name, tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "kept the" not in r.stderr  # recomputed, not reused
  doc = json.loads((zoo / BARRIER_JSON).read_text())
  assert doc["format"] == BARRIER_FORMAT
  assert doc["methods"]["weight"]["settings"]["matcher"] == "auto"
  new, old = blocks(r.stdout), blocks((zoo / "barrier_tables.txt").read_text())
  assert without(new[0], "with collapsed") == old[0]
  seconds = lambda table: [line[:-len("  seconds  note")] for line in table]  # timings differ
  assert seconds(new[1]) == seconds(old[1])
  after = read_barrier_json(zoo)
  for which in ("naive", "weight", "activation"):
    assert after.curves(which) == before.curves(which)
    # REPAIR was rewritten since (c8c4d52, it folds into any network's layers): a loss of
    # the naive line moves by one float32 ulp (6e-8), nothing more.
    new, old = after.curves(which, repaired=True), before.curves(which, repaired=True)
    np.testing.assert_allclose(new.loss, old.loss, rtol=0, atol=1e-7)
    np.testing.assert_allclose(new.epsilon, old.epsilon, rtol=0, atol=1e-7)
  assert read_zoo_json(zoo).config == read_zoo_json(LEGACY / name).config


FORMAT_4 = "format4_moons_w4"  # weight, activation and REPAIR, no diagnostics


def _tables(result: BarrierResult, d: Path, tmp_path) -> list:
  rep = conn.report_family("moons", [zoo_barriers(d, result)], tmp_path,
                           ["weight", "activation"], repair=True)
  return [format_table(rep.epsilon_rows, conn.EPSILON_COLUMNS, conn.EPSILON_HEADERS).splitlines(),
          format_table(rep.method_rows, conn.COMPARISON_COLUMNS,
                       conn.COMPARISON_HEADERS).splitlines()]


def test_a_format_4_barrier_json_loads_and_gives_the_tables_its_version_printed(tmp_path):
  d = LEGACY / FORMAT_4
  loaded = open_zoo(d)
  doc = json.loads((d / BARRIER_JSON).read_text())
  assert doc["format"] == 4 and not any("maps" in m for m in doc["methods"].values())
  sizes = perm_sizes(loaded.spec, loaded.variables, batch_dims=1)
  result = BarrierResult.from_json(doc, d / BARRIER_JSON, loaded.record.num_models, sizes)
  assert result.method_names == ("weight", "activation")
  assert all(m.maps == () for m in result.methods)
  assert result.curves("aligned").epsilon.tolist() == doc["methods"]["weight"]["epsilon"]
  assert [p.tolist() for p in result.method("activation").perms[1].values()] == \
      list(doc["methods"]["activation"]["perms"][1].values())
  assert _tables(result, d, tmp_path) == blocks((d / "barrier_tables.txt").read_text())


def test_the_entry_point_keeps_a_format_4_file_and_writes_it_in_todays_format(tmp_path):
  zoo = shutil.copytree(LEGACY / FORMAT_4, tmp_path / FORMAT_4)
  before = read_barrier_json(zoo)
  r = run_cli("barrier", f"--zoo={zoo}", "--align=weight,activation", "--repair",
              f"--figures={tmp_path / 'figures'}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "kept the weight, activation results already in barrier.json" in r.stderr
  assert blocks(r.stdout) == blocks((zoo / "barrier_tables.txt").read_text())
  assert json.loads((zoo / BARRIER_JSON).read_text())["format"] == BARRIER_FORMAT == 5
  after = read_barrier_json(zoo)
  assert dataclasses.replace(after, versions=before.versions) == before  # nothing else moved
