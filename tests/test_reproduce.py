"""The reproduction pipeline end to end at its smallest preset: every step runs (or is
skipped for a dataset that is not installed), the report links every figure it names, and
the same command again keeps every finished step and writes the same report."""
import os
import re
import subprocess
import sys
from pathlib import Path

from lmc_jax.report.reproduction import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_reproduction_writes_a_complete_report(tmp_path):
  data = ROOT / "data"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  command = [sys.executable, "-m", "experiments.reproduce", "--preset=smoke",
             f"--out={tmp_path / 'report'}", f"--runs={tmp_path / 'runs'}", f"--data_dir={data}"]
  r = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  report = (tmp_path / "report" / "report.md").read_text()
  figures = {p: p.read_bytes() for p in (tmp_path / "report" / "figures").rglob("*.png")}
  # Again: every step finished, so every step is kept and nothing is rewritten.
  again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  kept = (tmp_path / "report" / "report.md").read_text()
  first, second = _commands(report), _commands(kept)
  assert [c for c, _ in second] == [c for c, _ in first]
  for (_, before), (_, after) in zip(first, second):
    assert after.startswith("ok (kept, ") if before == "ok" else after == before
  assert {p: p.read_bytes() for p in figures} == figures
  for heading in ("Table 3.1", "E2, E3", "E9", "Table 5.1", "Table 5.2", "Table 3.2", "E4",
                  "Table 5.3"):
    assert heading in report
  assert "Median aligned epsilon below median naive at every width" in report
  train, test = PRESETS["smoke"].mnist_subset  # the MNIST zoos' images, stated as a reduction
  assert f"{train:,} training and {test:,} test images" in report
  for link in re.findall(r"\]\((figures/[^)]+\.png)\)", report):
    assert (tmp_path / "report" / link).stat().st_size > 5_000, link
  if not (data / "cifar10" / "SOURCE.json").is_file():
    assert "skipped: cifar10 not installed" in report
  assert "| failed" not in report


def _commands(report: str):
  """(command, status) of each row of the report's command table."""
  rows = report[report.index("## Commands"):].splitlines()[4:]
  cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows if row.startswith("|")]
  return [(c[0], c[1]) for c in cells]
