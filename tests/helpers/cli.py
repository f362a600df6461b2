"""Running the entry points as a user does, and checking how they refuse bad input.

`run_cli` runs an entry point inside the test's own process (no interpreter to start, no
second import of jax, compiled functions shared with the other tests of the worker);
`run_module` starts `python -m experiments.<name>` as a user does, for the tests where the
process itself is the point: exit on a signal, a crash at a point set in the environment,
fake devices, the environment's own flags. Both return a `subprocess.CompletedProcess`.
"""
import contextlib
import hashlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

from absl import flags
from absl import logging as absl_logging

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *args, env: dict = None, timeout: float = 600, prefix=()):
  """`python -m experiments.<module> args...` from the repository root; `env` adds to
  the environment (e.g. LMC_JAX_CRASH_AT); `prefix` goes before the interpreter (e.g. a
  `setpriv` that drops root's permission overrides)."""
  full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}  # env may set PYTHONPATH
  return subprocess.run([*prefix, sys.executable, "-m", f"experiments.{module}", *args],
                        cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


ENTRY_POINTS = "lmc_jax.cli"
SHARED = ("lmc_jax.cli.common", "lmc_jax.cli.config_flags")  # helpers, not entry points


def cli_module(name: str):
  """`lmc_jax.cli.<name>`, imported with its flags the only entry point's flags defined.

  absl's flags are process-wide and entry points share flag names (`--zoo` in barrier and
  merge), so two of them can not be imported side by side: every flag that a module of
  `lmc_jax.cli` defined is deleted and the entry points are imported afresh, unless `name`
  is already the only one imported."""
  full = f"{ENTRY_POINTS}.{name}"
  loaded = sorted(m for m in sys.modules if m.startswith(ENTRY_POINTS + ".") and m not in SHARED)
  if loaded == [full]:
    return sys.modules[full]
  FLAGS = flags.FLAGS
  FLAGS.unparse_flags()
  for module, owned in list(FLAGS.flags_by_module_dict().items()):
    if module.startswith(ENTRY_POINTS + "."):
      for flag in list(owned):
        for flag_name in {flag.name, flag.short_name} - {None}:
          if flag_name in FLAGS and FLAGS[flag_name] is flag:
            delattr(FLAGS, flag_name)
  package = importlib.import_module(ENTRY_POINTS)
  for module in loaded:
    del sys.modules[module]
    if hasattr(package, module.rsplit(".", 1)[1]):
      delattr(package, module.rsplit(".", 1)[1])
  return importlib.import_module(full)


@contextlib.contextmanager
def _as_a_process(out, err, cwd):
  """stdout, stderr, absl's log lines (INFO and up, in absl's format) and warnings (once per
  place, as Python shows them) into `out` and `err`; the working folder `cwd`."""
  handler = logging.StreamHandler(err)
  handler.setFormatter(absl_logging.PythonFormatter())
  root = logging.getLogger()
  verbosity, level, before = absl_logging.get_verbosity(), root.level, os.getcwd()

  def show(message, category, filename, lineno, file=None, line=None):
    err.write(warnings.formatwarning(message, category, filename, lineno, line))
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
         warnings.catch_warnings():
      warnings.simplefilter("default")
      warnings.simplefilter("ignore", DeprecationWarning)
      warnings.showwarning = show
      root.addHandler(handler)
      root.setLevel(logging.INFO)  # as absl's app sets it: the library logs to the root logger
      absl_logging.set_verbosity(absl_logging.INFO)
      os.chdir(cwd)
      yield
  finally:
    os.chdir(before)
    root.removeHandler(handler)
    root.setLevel(level)
    absl_logging.set_verbosity(verbosity)


def run_cli(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
  """Runs the entry point `name` (`lmc-<name>`, `python -m experiments.<name>`) on `args` in
  this process, from `cwd` (default: the repository root), as a process would: flags parsed
  (a bad one refused in one line, exit 2), `main` run, its exit status (a traceback and 1
  for an uncaught exception), stdout and stderr. Flags are back at their defaults after."""
  module = cli_module(name)
  common = importlib.import_module(f"{ENTRY_POINTS}.common")
  out, err = io.StringIO(), io.StringIO()
  try:
    with _as_a_process(out, err, cwd or ROOT):
      try:
        code = module.main(common.parse_flags([f"experiments/{name}.py", *args]))
      except SystemExit as e:
        code = e.code
      except Exception:  # as a process: the traceback, exit status 1
        traceback.print_exc(file=err)
        code = 1
  finally:
    flags.FLAGS.unparse_flags()
    importlib.import_module("lmc_jax.data.tfds").use_data_dir(None)  # set from --data_dir
  if code is not None and not isinstance(code, int):  # sys.exit("message")
    err.write(f"{code}\n")
    code = 1
  return subprocess.CompletedProcess([sys.executable, "-m", f"experiments.{name}", *args],
                                     code or 0, out.getvalue(), err.getvalue())


def refused(result, *words) -> str:
  """Asserts exit status 2 and exactly one `error:` line holding every one of `words`;
  returns that line."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, result.stderr[-3000:]
  for w in words:
    assert w in lines[0], lines[0]
  return lines[0]


def snapshot(root: Path, folders: bool = False) -> dict:
  """SHA-256 of every file under `root` (hidden ones included), by relative path; with
  `folders`, every folder too (as "dir")."""
  return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                     if p.is_file() else "dir")
          for p in sorted(Path(root).rglob("*")) if p.is_file() or (folders and p.is_dir())}
