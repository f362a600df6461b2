"""Every result file records its format; a reader refuses a newer one in one sentence and
changes nothing; an older barrier.json is read into the same records: format 2 is reused
and written again as format 3, format 1 is recomputed, never misread."""
import json

import pytest

from lmc_jax.analysis import barrier as barrier_mod
from lmc_jax.analysis.barrier import analyse_zoo
from lmc_jax.errors import LmcError
from lmc_jax.result_files import BARRIER_FORMAT, BARRIER_JSON, ZOO_JSON
from lmc_jax.schema import check_format
from lmc_jax.zoo.io import load_zoo
from tests.helpers import saved_moons_zoo
from tests.helpers.legacy import as_format_1, as_format_2


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("formats") / "moons_w4"
  saved_moons_zoo(d, 4)
  return d


def test_check_format():
  assert check_format({"format": 2, "x": 1}, "f.json", 2) == {"format": 2, "x": 1}
  assert check_format({"x": 1}, "f.json", 1) == {"x": 1}  # before formats: format 1
  with pytest.raises(LmcError, match=r"f.json has format 3, newer than the 2 this lmc_jax reads"):
    check_format({"format": 3}, "f.json", 2)
  with pytest.raises(LmcError, match="format 'x'"):
    check_format({"format": "x"}, "f.json", 2)


def test_a_zoo_of_a_newer_format_is_refused(zoo_dir, tmp_path):
  d = tmp_path / "z"
  d.mkdir()
  for name in (ZOO_JSON, "params.npz"):
    (d / name).write_bytes((zoo_dir / name).read_bytes())
  doc = json.loads((d / ZOO_JSON).read_text())
  assert doc["format"] == 2
  doc["format"] = 3
  (d / ZOO_JSON).write_text(json.dumps(doc))
  with pytest.raises(LmcError, match="zoo.json has format 3, newer than the 2"):
    load_zoo(d)


def _count_alignments(monkeypatch):
  calls = []
  real = barrier_mod.align_by

  def counting(name, *args, **kwargs):
    calls.append(name)
    return real(name, *args, **kwargs)
  monkeypatch.setattr(barrier_mod, "align_by", counting)
  return calls


def test_barrier_json_newer_is_refused(zoo_dir):
  analyse_zoo(zoo_dir)
  path = zoo_dir / BARRIER_JSON
  written = json.loads(path.read_text())
  assert written["format"] == BARRIER_FORMAT == 5
  newer = dict(written, format=BARRIER_FORMAT + 1)
  path.write_text(json.dumps(newer))
  with pytest.raises(LmcError, match="newer than the 5 this lmc_jax reads; upgrade lmc_jax, "
                                     "or pass --recompute"):
    analyse_zoo(zoo_dir)
  assert json.loads(path.read_text()) == newer  # left as it was
  analyse_zoo(zoo_dir, recompute=True)
  assert json.loads(path.read_text())["format"] == BARRIER_FORMAT


def test_barrier_json_format_2_is_reused_and_written_as_format_3(zoo_dir, monkeypatch):
  analyse_zoo(zoo_dir, methods=("weight", "activation"), repair=True, recompute=True)
  path = zoo_dir / BARRIER_JSON
  written = json.loads(path.read_text())
  path.write_text(json.dumps(as_format_2(written)))
  calls = _count_alignments(monkeypatch)
  result = analyse_zoo(zoo_dir, methods=("weight", "activation"), repair=True)
  assert calls == []  # every entry kept, REPAIR's included
  again = json.loads(path.read_text())
  assert again["format"] == 5 and "aligned" not in again
  assert not any(name.endswith("+repair") for name in again["methods"])
  drop = lambda d: {k: v for k, v in d.items() if k not in ("versions", "seconds")}
  assert drop(again) == drop(written)
  assert result.curves("aligned").epsilon.tolist() == written["methods"]["weight"]["epsilon"]


def test_barrier_json_format_1_is_recomputed(zoo_dir, monkeypatch):
  analyse_zoo(zoo_dir, recompute=True)
  path = zoo_dir / BARRIER_JSON
  written = json.loads(path.read_text())
  # Format 1 stored weight matching's curves under methods too; planted values show
  # whether anything of it was kept.
  older = as_format_1(written)
  older["aligned"]["epsilon"] = [-1.0] * len(older["aligned"]["epsilon"])
  path.write_text(json.dumps(older))
  calls = _count_alignments(monkeypatch)
  again = analyse_zoo(zoo_dir)
  assert calls == ["weight"]
  assert json.loads(path.read_text())["format"] == BARRIER_FORMAT
  assert again.curves("aligned").epsilon.tolist() == written["methods"]["weight"]["epsilon"]
