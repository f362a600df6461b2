"""The model axis split over 4 (fake CPU) devices, in one process or two, gives the zoo and
sweep of 1 device."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.zoo.training import train_zoo

ROOT = Path(__file__).resolve().parents[1]
HELPER = "tests.helpers.many_devices"  # run as a module from ROOT


def _flags(devices: str) -> str:
  """XLA_FLAGS for a process with host devices `devices`, and the suite's other flags."""
  return f"{os.environ.get('XLA_FLAGS', '')} {devices}".strip()


def test_four_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS=_flags("--xla_force_host_platform_device_count=4"),
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", HELPER], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 4
  assert result["models"] == 5  # padded to 8 on the devices, 5 come back
  assert "3 padding model(s)" in result["log"]
  assert result["shard_rows"] == [2, 2, 2, 2]
  assert result["params_max_abs_diff"] < 1e-5
  assert result["metrics_max_abs_diff"] < 1e-5
  assert result["sweep_shape"] == [10, 11]
  assert result["sweep_max_abs_diff"] < 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_the_zoo_one_process_trains(tmp_path):
  """`experiments.zoo --distributed` on two processes of 2 devices each (4 in all): the
  first process writes the zoo, and its metrics are those of a single-device run."""
  env = dict(os.environ, XLA_FLAGS=_flags("--xla_force_host_platform_device_count=2"),
             JAX_PLATFORMS="cpu")
  args = ["--width=16", "--num_models=5", "--epochs=3", "--batch_size=128", f"--out={tmp_path}",
          "--distributed", f"--coordinator=localhost:{_free_port()}", "--num_processes=2"]
  procs = [subprocess.Popen([sys.executable, "-m", "experiments.zoo", *args, f"--process_id={i}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "4 devices in all" in outs[0][1]
  doc = json.loads((tmp_path / "moons_w16" / "zoo.json").read_text())
  config = default_config("moons", hidden=(16,), num_models=5, epochs=3, batch_size=128)
  alone = train_zoo(config, load_dataset(config), log=None)
  for shared, single in zip(doc["models"], alone.metrics):
    for k in ("train_loss", "test_loss"):
      assert abs(shared[k] - single[k]) < 1e-5
