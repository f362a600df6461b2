"""Every result file records its format; a reader refuses a newer one in one sentence and
changes nothing, and an older barrier.json is recomputed rather than misread."""
import json

import pytest

from lmc_jax.analysis.barrier import analyse_zoo
from lmc_jax.errors import LmcError
from lmc_jax.result_files import BARRIER_FORMAT, BARRIER_JSON, ZOO_JSON, check_format
from lmc_jax.zoo.io import load_zoo
from tests.helpers import saved_moons_zoo


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


def test_barrier_json_newer_is_refused_older_is_recomputed(zoo_dir):
  result = analyse_zoo(zoo_dir)
  assert result["format"] == BARRIER_FORMAT
  path = zoo_dir / BARRIER_JSON
  newer = dict(result, format=BARRIER_FORMAT + 1)
  path.write_text(json.dumps(newer))
  with pytest.raises(LmcError, match="newer than the 2 this lmc_jax reads; upgrade lmc_jax, "
                                     "or pass --recompute"):
    analyse_zoo(zoo_dir)
  assert json.loads(path.read_text()) == newer  # left as it was
  assert analyse_zoo(zoo_dir, recompute=True)["format"] == BARRIER_FORMAT
  # Format 1 stored weight matching's curves under methods too: recomputed, not reused.
  older = dict(result, format=1)
  older["aligned"] = dict(older["aligned"], epsilon=[-1.0] * len(older["aligned"]["epsilon"]))
  path.write_text(json.dumps(older))
  again = analyse_zoo(zoo_dir)
  assert again["format"] == BARRIER_FORMAT
  assert again["aligned"]["epsilon"] == result["aligned"]["epsilon"]
