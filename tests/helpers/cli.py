"""Running the entry points as a user does, and checking how they refuse bad input."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *args, env: dict = None, timeout: float = 600, prefix=()):
  """`python -m experiments.<module> args...` from the repository root; `env` adds to
  the environment (e.g. LMC_JAX_CRASH_AT); `prefix` goes before the interpreter (e.g. a
  `setpriv` that drops root's permission overrides)."""
  full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}  # env may set PYTHONPATH
  return subprocess.run([*prefix, sys.executable, "-m", f"experiments.{module}", *args],
                        cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


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
