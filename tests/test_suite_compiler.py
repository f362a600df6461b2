"""The suite compiles with its own XLA flags (`tests/conftest.py`: `suite_flags`, LLVM at -O1
and XLA's older elemental emitters) where users run XLA's defaults: the same probe of
lmc_jax's numbers (`tests/helpers/numerics_probe.py`), run under each (the suite's in the
test's own process, the users' as a process), gives every parameter, training loss and sweep
value of MLP zoos to float32 rounding (LayerNorm's reductions round differently with the
older emitters: a few units in the last place per step, 1e-5 relative after training)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import OLDER_EMITTERS_FLAG, OPT_LEVEL_FLAG, suite_flags, suite_xla_flags
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
  ours_flags = suite_flags().split()
  if not all(flag in flags.split() for flag in ours_flags):
    pytest.skip("the suite runs with XLA_FLAGS as they are (LMC_TEST_DEFAULT_XLA or XLA_FLAGS)")
  users = " ".join(flag for flag in flags.split() if flag not in ours_flags)
  ours = {k: np.asarray(v) for k, v in probe().items()}
  theirs = _probe_process(tmp_path / "users.npz", users)
  assert sorted(ours) == sorted(theirs)
  assert len(ours) >= 20
  for k in ours:
    assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
    np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_suite_flags_are_added_unless_a_level_is_set(monkeypatch):
  monkeypatch.delenv("LMC_TEST_DEFAULT_XLA", raising=False)
  both = f"{OPT_LEVEL_FLAG} {OLDER_EMITTERS_FLAG}"
  assert suite_xla_flags("", "0.10.2") == both
  assert suite_xla_flags("--xla_force_host_platform_device_count=4", "0.5.3") == \
      f"--xla_force_host_platform_device_count=4 {both}"
  # An XLA that does not know a flag stops the process: jaxlib 0.5.0 gets the level only.
  assert suite_xla_flags("", "0.5.0") == suite_flags("0.5.1") == OPT_LEVEL_FLAG
  assert suite_flags("0.6.0.dev20250301") == both
  assert suite_xla_flags("--xla_backend_optimization_level=3") == \
      "--xla_backend_optimization_level=3"
  monkeypatch.setenv("LMC_TEST_DEFAULT_XLA", "1")
  assert suite_xla_flags("--xla_force_host_platform_device_count=4") == \
      "--xla_force_host_platform_device_count=4"
