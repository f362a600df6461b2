"""Installed, not only checked out: a wheel built from a copy of the sources holds the
package (every module, no `experiments/` or `tests/`) and the licence; installed without
editing into a fresh environment (`--system-site-packages`: jax and the rest come from this
one), every console script it declares runs `--help` from a directory away from the
checkout, and imports lmc_jax from the environment, not from the checkout.
Marked `install` (about 30 s here): `-m "not install"` leaves it out."""
import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT

pytestmark = pytest.mark.install

_SKIP_ANYWHERE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".ruff_cache",
                                        ".pytest_cache", "*.pyc")


def _skip(folder, names):
  """What the copy leaves out: build products anywhere; the checkout's own data, runs and
  build folders at its top only (lmc_jax/data is a sub-package)."""
  top = {".git", "data", "runs", "build", "dist"} if Path(folder) == ROOT else set()
  return set(_SKIP_ANYWHERE(folder, names)) | (top & set(names))


def _setuptools_builds_wheels() -> bool:
  """Whether this environment can build a wheel without fetching build tools."""
  if importlib.util.find_spec("wheel") is not None:
    return True
  import setuptools
  major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
  return (major, minor) >= (70, 1)  # bdist_wheel moved into setuptools


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  shutil.copytree(ROOT, src, ignore=_skip)  # the build's own files stay out of the checkout
  args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
          str(src)]
  if _setuptools_builds_wheels():
    args.insert(5, "--no-build-isolation")
  r = subprocess.run(args, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  (path,) = (tmp / "dist").glob("lmc_jax-*.whl")
  return path


def test_the_wheel_holds_the_package_and_the_licence(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lmc_jax").rglob("*.py")}
  assert modules <= names, sorted(modules - names)[:5]
  assert not any(n.startswith(("experiments/", "tests/")) for n in names)
  licences = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
  assert licences, sorted(n for n in names if ".dist-info/" in n)
  assert zipfile.ZipFile(wheel).read(licences[0]) == (ROOT / "LICENSE").read_bytes()


def test_installed_console_scripts_run_from_elsewhere(wheel, tmp_path):
  env_dir = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                  str(env_dir)], check=True, timeout=120)
  py = env_dir / "bin" / "python"
  r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                      "--no-deps", "--no-index", str(wheel)],
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  with zipfile.ZipFile(wheel) as z:
    (ep,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(z.read(ep).decode())
  scripts = sorted(parser["console_scripts"])
  assert len(scripts) == 10 and "lmc-zoo" in scripts
  away = tmp_path / "elsewhere"
  away.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(JAX_PLATFORMS="cpu", PATH=f"{env_dir / 'bin'}:{env['PATH']}")

  def help_of(name):
    return name, subprocess.run([str(env_dir / "bin" / name), "--help"], cwd=away, env=env,
                                capture_output=True, text=True, timeout=300)

  with ThreadPoolExecutor(2) as pool:  # each one imports jax: two at a time on two cores
    results = dict(pool.map(help_of, scripts))
  for name, r in results.items():
    # absl ends --help with exit status 1; a failed import would be a traceback instead.
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (name, r.stderr[-2000:])
    assert "Try --helpfull" in r.stdout, (name, r.stdout[-500:], r.stderr[-2000:])
  where = subprocess.run([str(py), "-c", "import lmc_jax; print(lmc_jax.__file__)"], cwd=away,
                         env=env, capture_output=True, text=True, timeout=120)
  assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout + where.stderr
  assert not list(away.iterdir())  # --help writes nothing where it runs
