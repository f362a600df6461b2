import json

import jax
import numpy as np
import pytest

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.result_files import PARAMS_NPZ, ZOO_JSON
from lmc_jax.zoo.handle import open_zoo
from lmc_jax.zoo.io import load_zoo, save_zoo
from lmc_jax.zoo.training import train_zoo


@pytest.fixture(scope="module")
def tiny_zoo():
  config = default_config("moons", hidden=(4,), num_models=3, epochs=1)
  return train_zoo(config, load_dataset(config), log=None)


def test_round_trip_and_numpy_only_format(tmp_path, tiny_zoo):
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  config, params, doc = load_zoo(tmp_path / "z")
  assert config == tiny_zoo.config
  for u, v in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tiny_zoo.params)):
    np.testing.assert_array_equal(u, v)
  with np.load(tmp_path / "z" / PARAMS_NPZ) as f:  # readable by numpy alone
    assert sorted(f.files) == ["params/Dense_0/bias", "params/Dense_0/kernel",
                               "params/Dense_1/bias", "params/Dense_1/kernel"]
    assert f["params/Dense_0/kernel"].shape == (3, 2, 4)
  doc = json.loads((tmp_path / "z" / ZOO_JSON).read_text())
  assert doc["seed"] == 0 and doc["config"]["model"]["hidden"] == [4] and "jax" in doc["versions"]
  assert set(doc["models"][0]) == {"train_loss", "test_loss", "train_acc", "test_acc", "diverged",
                                     "collapsed"}


def test_killed_write_leaves_the_old_zoo_loadable(tmp_path, tiny_zoo, monkeypatch):
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  before = {p.name: p.read_bytes() for p in (tmp_path / "z").iterdir()}

  def dies_halfway(f, **arrays):
    f.write(b"PK\x03\x04 half a zip")
    raise KeyboardInterrupt
  monkeypatch.setattr(np, "savez", dies_halfway)
  with pytest.raises(KeyboardInterrupt):
    save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  after = {p.name: p.read_bytes() for p in (tmp_path / "z").iterdir()}
  assert after == before  # no temporary file left, nothing replaced
  load_zoo(tmp_path / "z")


def test_params_without_matching_zoo_json_do_not_load(tmp_path, tiny_zoo):
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  # A run killed between renaming the new params.npz and writing zoo.json:
  other = jax.tree_util.tree_map(lambda v: v + 1, tiny_zoo.params)
  save_zoo(tmp_path / "y", tiny_zoo.config, other, tiny_zoo.metrics)
  (tmp_path / "z" / PARAMS_NPZ).write_bytes((tmp_path / "y" / PARAMS_NPZ).read_bytes())
  with pytest.raises(LmcError, match="checksum"):
    load_zoo(tmp_path / "z")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_params_are_refused(tmp_path, tiny_zoo, damage):
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  npz = tmp_path / "z" / PARAMS_NPZ
  data = npz.read_bytes()
  npz.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip at all")
  # Make the checksum agree so the parser itself must notice.
  doc = json.loads((tmp_path / "z" / ZOO_JSON).read_text())
  import hashlib
  doc["params_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
  (tmp_path / "z" / ZOO_JSON).write_text(json.dumps(doc))
  with pytest.raises(LmcError, match="corrupt"):
    load_zoo(tmp_path / "z")


def test_missing_and_incomplete_zoos(tmp_path, tiny_zoo):
  with pytest.raises(LmcError, match="does not exist"):
    load_zoo(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(LmcError, match="not a finished zoo"):
    load_zoo(tmp_path / "empty")
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  (tmp_path / "z" / PARAMS_NPZ).unlink()
  with pytest.raises(LmcError, match="incomplete"):
    load_zoo(tmp_path / "z")
  (tmp_path / "z" / ZOO_JSON).write_text("{not json")
  with pytest.raises(LmcError, match="not a valid zoo"):
    load_zoo(tmp_path / "z")


def test_params_that_do_not_fit_the_config_are_refused(tmp_path, tiny_zoo):
  wide = default_config("moons", hidden=(6,), num_models=3, epochs=1)
  other = train_zoo(wide, load_dataset(wide), log=None)
  # zoo.json says width 4 but the arrays are width 6.
  save_zoo(tmp_path / "z", tiny_zoo.config, other.params, tiny_zoo.metrics)
  with pytest.raises(LmcError, match="does not fit the model"):
    open_zoo(tmp_path / "z")


def test_written_files_get_the_ordinary_mode(tmp_path, tiny_zoo):
  import os
  import stat
  save_zoo(tmp_path / "z", tiny_zoo.config, tiny_zoo.params, tiny_zoo.metrics)
  umask = os.umask(0)
  os.umask(umask)
  for name in (ZOO_JSON, PARAMS_NPZ):
    assert stat.S_IMODE((tmp_path / "z" / name).stat().st_mode) == 0o666 & ~umask
