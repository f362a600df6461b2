"""The reproduction pipeline end to end at its smallest preset: every step runs (or is
skipped for a dataset that is not installed) and the report links every figure it names."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_reproduction_writes_a_complete_report(tmp_path):
  data = ROOT / "data"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  r = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--preset=smoke",
                      f"--out={tmp_path / 'report'}", f"--runs={tmp_path / 'runs'}",
                      f"--data_dir={data}"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  report = (tmp_path / "report" / "report.md").read_text()
  for heading in ("Table 3.1", "E2, E3", "E9", "Table 5.1", "Table 5.2", "Table 3.2", "E4",
                  "Table 5.3"):
    assert heading in report
  assert "Median aligned epsilon below median naive at every width" in report
  for link in re.findall(r"\]\((figures/[^)]+\.png)\)", report):
    assert (tmp_path / "report" / link).stat().st_size > 5_000, link
  if not (data / "cifar10" / "SOURCE.json").is_file():
    assert "skipped: cifar10 not installed" in report
  assert "| failed" not in report
