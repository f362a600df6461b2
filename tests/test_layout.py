"""The folders are the dependency order: a module imports only from its own sub-package,
the ones listed before it, and the foundation modules at the top of the package."""
import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import lmc_jax

PACKAGE = Path(lmc_jax.__file__).parent
ORDER = ["data", "nn", "symmetry", "zoo", "lmc", "align", "merging", "analysis", "report", "cli"]
FOUNDATION = {"errors", "config", "tree_utils", "atomic_files", "result_files", "preflight",
              "dir_lock", "crash_points", "schema", "records", "barrier_records",
              "study_records", "execution", "version", "split_spec",
              "merge_records", "stopping", "allocator", "host_arrays"}


def level(module: str) -> int:
  """-1 for the foundation, the sub-package's index otherwise."""
  parts = module.split(".")
  if parts[0] != "lmc_jax" or len(parts) == 1:
    raise AssertionError(f"not a library module: {module}")
  if parts[1] in FOUNDATION:
    return -1
  assert parts[1] in ORDER, f"{module}: sub-package {parts[1]!r} is not in the declared order"
  return ORDER.index(parts[1])


def imported_modules(path: Path):
  """Every `lmc_jax...` module a file imports, at the top or inside functions."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmc_jax"):
      if node.module == "lmc_jax":  # from lmc_jax import result_files
        yield from (f"lmc_jax.{a.name}" for a in node.names)
      elif node.module in {f"lmc_jax.{p}" for p in ORDER}:  # from lmc_jax.report import figures
        yield from (f"{node.module}.{a.name}" for a in node.names)
      else:
        yield node.module
    elif isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name.startswith("lmc_jax."))


def library_modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    name = ".".join(rel.parts)
    if name != "lmc_jax.__init__":  # the public API re-exports from every level
      yield name.removesuffix(".__init__"), path


def test_every_module_imports_only_downward():
  wrong = []
  for name, path in library_modules():
    for dep in imported_modules(path):
      if level(dep) > level(name):
        wrong.append(f"{name} imports {dep}")
  assert not wrong, "imports against the dependency order:\n" + "\n".join(wrong)


def test_the_foundation_imports_nothing_above_it():
  for name, path in library_modules():
    if level(name) == -1:
      assert all(level(dep) == -1 for dep in imported_modules(path)), name


def test_every_sub_package_is_declared():
  found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
  assert found == set(ORDER)
  top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  assert top == FOUNDATION


def test_the_checker_sees_a_wrong_import(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from lmc_jax.report.figures import new_figure\n"
                 "def f():\n  from lmc_jax import result_files\n")
  deps = list(imported_modules(bad))
  assert deps == ["lmc_jax.report.figures", "lmc_jax.result_files"]
  assert level(deps[0]) > level("lmc_jax.data.datasets")


def test_every_public_name_is_its_modules_own_and_imported_on_first_use():
  for name in lmc_jax.__all__:
    module = lmc_jax._EXPORTS.get(name, "lmc_jax.version")
    assert getattr(lmc_jax, name) is getattr(importlib.import_module(module), name), name
  assert set(lmc_jax.__all__) <= set(dir(lmc_jax)) and not hasattr(lmc_jax, "no_such_name")
  # A command imports what it uses: the zoo command draws with matplotlib only at the end,
  # and aligns nothing (no scipy), so a refusal or `--help` loads neither.
  code = ("import sys, lmc_jax.cli.zoo; "
          "print(sorted(m for m in ('matplotlib', 'scipy') if m in sys.modules))")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                     cwd=PACKAGE.parent, env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent)))
  assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:] + r.stdout


def test_the_suites_slow_file_list_names_test_files_that_exist():
  """A name in HEAVY_FILES that matches no file would silently lose its place in the order."""
  from tests.conftest import HEAVY_FILES
  here = Path(__file__).parent
  assert len(set(HEAVY_FILES)) == len(HEAVY_FILES)
  assert [name for name in HEAVY_FILES if not (here / name).is_file()] == []
