"""The model axis split over 4 (fake CPU) devices gives the zoo and sweep of 1 device."""
import json
import os
import subprocess
import sys
from pathlib import Path

HELPER = Path(__file__).parent / "helpers" / "many_devices.py"


def test_four_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, str(HELPER)], env=env, capture_output=True, text=True,
                       timeout=600)
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
