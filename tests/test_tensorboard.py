"""`--tensorboard=DIR` on experiments.zoo and experiments.barrier: the event files, read
back here with a reader of the TFRecord framing written for this test (checking both CRCs)
and tensorboardX's Event protobuf, hold the numbers of history.npz, zoo.json and
barrier.json. Without tensorboardX the flag is refused in one sentence naming the extra."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lmc_jax.result_files import BARRIER_JSON, HISTORY_NPZ, ZOO_JSON
from tests.helpers.cli import ROOT, refused, run_cli, run_module

tensorboardX = pytest.importorskip("tensorboardX", reason="tensorboardX (the [tensorboard] "
                                   "extra) is not installed")
from tensorboardX.crc32c import crc32c  # noqa: E402
from tensorboardX.proto.event_pb2 import Event  # noqa: E402


def _masked(crc: int) -> int:
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_scalars(run: Path) -> dict:
  """{tag: {step: value}} of every event file in `run`, each record's CRCs checked."""
  out = {}
  files = sorted(run.glob("events.out.tfevents.*"))
  assert files, f"no event file in {run}"
  for path in files:
    data = path.read_bytes()
    i = 0
    while i < len(data):
      header = data[i:i + 8]
      (n,) = struct.unpack("<Q", header)
      (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
      assert hcrc == _masked(crc32c(header))
      body = data[i + 12:i + 12 + n]
      (bcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
      assert bcrc == _masked(crc32c(body))
      i += 16 + n
      event = Event.FromString(body)
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = v.simple_value
  return out


def _quartiles(values):
  v = np.asarray(values, np.float64)
  return np.percentile(v[np.isfinite(v)], [25, 50, 75])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("tb")
  out, tb = tmp / "runs", tmp / "tb"
  r = run_cli("zoo", f"--out={out}", "--width=4", "--num_models=3", "--epochs=3",
              "--eval_every=2", f"--tensorboard={tb}")
  assert r.returncode == 0, r.stderr[-3000:]
  r = run_cli("barrier", f"--zoo={out / 'moons_w4'}", "--align=weight,activation",
              f"--figures={tmp / 'figures'}", f"--tensorboard={tb}")
  assert r.returncode == 0, r.stderr[-3000:]
  return out / "moons_w4", tb / "moons_w4"


def test_zoo_curves_equal_the_history(written):
  zoo, run = written
  got = read_scalars(run / "zoo")
  history = np.load(zoo / HISTORY_NPZ)
  train = history["train_loss"]
  assert sorted(got["train_loss/median"]) == [1, 2, 3]
  for e in range(3):
    q25, med, q75 = _quartiles(train[e])
    np.testing.assert_allclose([got["train_loss/q25"][e + 1], got["train_loss/median"][e + 1],
                                got["train_loss/q75"][e + 1]], [q25, med, q75], rtol=1e-6)
  assert list(history["eval_epoch"]) == [2, 3]
  for key in ("test_loss", "test_acc"):
    for k, epoch in enumerate(history["eval_epoch"]):
      np.testing.assert_allclose(got[f"{key}/median"][int(epoch)],
                                 _quartiles(history[key][k])[1], rtol=1e-6)
  models = json.loads((zoo / ZOO_JSON).read_text())["models"]
  np.testing.assert_allclose(got["final/test_acc_mean"][3],
                             np.mean([m["test_acc"] for m in models]), rtol=1e-6)


def test_barrier_measures_equal_barrier_json(written):
  zoo, run = written
  got = read_scalars(run / "barrier")
  doc = json.loads((zoo / BARRIER_JSON).read_text())
  entries = {"naive": doc["naive"], **doc["methods"]}
  assert set(entries) == {"naive", "weight", "activation"}
  for name, entry in entries.items():
    for measure in ("epsilon", "barrier"):
      q25, med, q75 = _quartiles(entry[measure])
      np.testing.assert_allclose([got[f"barrier/{name}/{measure}/{s}"][0]
                                  for s in ("q25", "median", "q75")], [q25, med, q75],
                                 rtol=1e-6)
    curve = got[f"barrier_curve/{name}/loss_median"]
    np.testing.assert_allclose([curve[i] for i in range(len(doc["alphas"]))],
                               np.median(np.asarray(entry["loss"]), axis=0), rtol=1e-6)


def test_a_rerun_rewrites_the_run_once(written, tmp_path):
  zoo, run = written
  r = run_cli("barrier", f"--zoo={zoo}", "--align=weight,activation",
              f"--figures={tmp_path / 'figures'}", f"--tensorboard={run.parent}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert len(list((run / "barrier").glob("events.out.tfevents.*"))) == 1


def test_without_tensorboardx_the_flag_is_refused(tmp_path):
  hide = tmp_path / "hide" / "tensorboardX"
  hide.mkdir(parents=True)
  (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
  out = tmp_path / "runs"
  env = {"PYTHONPATH": f"{hide.parent}:{ROOT}"}
  line = refused(run_module("zoo", f"--out={out}", "--width=4", f"--tensorboard={tmp_path / 'tb'}",
                            env=env), "--tensorboard needs tensorboardX", '".[tensorboard]"')
  assert line.count(".") <= 4
  assert not out.exists() and not (tmp_path / "tb").exists()


def test_a_file_as_the_directory_is_refused(tmp_path):
  (tmp_path / "tb").write_text("a file")
  out = tmp_path / "runs"
  refused(run_cli("zoo", f"--out={out}", "--width=4", f"--tensorboard={tmp_path / 'tb'}"),
          "--tensorboard=", "is a file")
  assert not out.exists() and (tmp_path / "tb").read_text() == "a file"
