"""The suite compiles with LLVM at -O1 (`tests/conftest.py`: SUITE_XLA_FLAGS) where users run
XLA's default: the same probe of lmc_jax's numbers (`tests/helpers/numerics_probe.py`), run
at each level (the suite's in the test's own process, the users' as a process), gives the
same bits for MLP zoos: every parameter, training loss and sweep value."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SUITE_XLA_FLAGS, suite_xla_flags
from tests.helpers.numerics_probe import probe

ROOT = Path(__file__).resolve().parents[1]


def _probe_process(out: Path, xla_flags: str) -> dict:
  env = dict(os.environ, XLA_FLAGS=xla_flags, PYTHONPATH=str(ROOT))
  r = subprocess.run([sys.executable, "-m", "tests.helpers.numerics_probe", str(out)], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  with np.load(out) as f:
    return {k: f[k] for k in f.files}


def test_the_suites_compile_level_gives_the_numbers_users_get(tmp_path):
  flags = os.environ.get("XLA_FLAGS", "")
  if SUITE_XLA_FLAGS not in flags:
    pytest.skip("the suite runs at XLA's default level here (LMC_TEST_DEFAULT_XLA or XLA_FLAGS)")
  users = flags.replace(SUITE_XLA_FLAGS, "").strip()
  ours = {k: np.asarray(v) for k, v in probe().items()}
  theirs = _probe_process(tmp_path / "users.npz", users)
  assert sorted(ours) == sorted(theirs)
  assert len(ours) >= 20
  for k in ours:
    assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
    assert ours[k].tobytes() == theirs[k].tobytes(), k


def test_suite_flags_are_added_unless_a_level_is_set(monkeypatch):
  monkeypatch.delenv("LMC_TEST_DEFAULT_XLA", raising=False)
  assert suite_xla_flags("") == SUITE_XLA_FLAGS
  assert suite_xla_flags("--xla_force_host_platform_device_count=4") == \
      f"--xla_force_host_platform_device_count=4 {SUITE_XLA_FLAGS}"
  assert suite_xla_flags("--xla_backend_optimization_level=3") == \
      "--xla_backend_optimization_level=3"
  monkeypatch.setenv("LMC_TEST_DEFAULT_XLA", "1")
  assert suite_xla_flags("--xla_force_host_platform_device_count=4") == \
      "--xla_force_host_platform_device_count=4"
