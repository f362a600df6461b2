"""`tests.helpers.cli.run_cli` runs an entry point inside the test's process as a process
would run it: the same files, exit status and error line as `python -m experiments.<name>`,
each entry point with its own flags only (barrier and merge both define --zoo), and every
flag back at its default for the next run."""
from absl import flags

from tests.helpers.cli import cli_module, refused, run_cli, run_module, snapshot


def test_in_process_and_as_a_process_write_the_same_zoo_bit_for_bit(tmp_path):
  args = ["--width=3", "--num_models=2", "--epochs=1", "--n_train=64", "--n_test=64"]
  inside = run_cli("zoo", *args, f"--out={tmp_path / 'inside'}")
  outside = run_module("zoo", *args, f"--out={tmp_path / 'outside'}")
  assert inside.returncode == outside.returncode == 0, inside.stderr + outside.stderr
  assert inside.stdout.replace("inside", "outside") == outside.stdout
  assert "epoch 1/1" in inside.stderr and "epoch 1/1" in outside.stderr  # absl's log lines
  files = snapshot(tmp_path / "inside" / "moons_w3")
  assert files["params.npz"] == snapshot(tmp_path / "outside" / "moons_w3")["params.npz"]


def test_a_refusal_reads_the_same_in_process_and_as_a_process(tmp_path):
  args = ["--width=4", "--epochs=0", f"--out={tmp_path}"]
  assert refused(run_cli("zoo", *args)) == refused(run_module("zoo", *args))
  refused(run_cli("zoo", "--num_models=many", f"--out={tmp_path}"), "--num_models", "many")
  assert not list(tmp_path.iterdir())


def test_each_entry_point_has_its_own_flags_and_every_run_starts_from_the_defaults(tmp_path):
  zoos = f"--zoo={tmp_path / 'a'},{tmp_path / 'b'}"
  refused(run_cli("merge", zoos, "--alphas=1"), "--alphas must be >= 2, got 1")
  assert "pairs" in flags.FLAGS and "runs" not in flags.FLAGS  # merge's, not barrier's
  # barrier's --zoo is a list of zoos to analyse, where merge's names the parents.
  refused(run_cli("barrier", zoos, "--reference=-1"), "--reference")
  assert "runs" in flags.FLAGS and "pairs" not in flags.FLAGS
  assert flags.FLAGS["zoo"].help.startswith("Zoo directories, comma-separated (default")
  # --alphas is 11 again: merge gets past it to the zoos, which do not exist.
  line = refused(run_cli("merge", zoos))
  assert "--alphas" not in line and "a" in line
  assert cli_module("merge") is cli_module("merge")  # imported once while it is the one
  assert not list(tmp_path.iterdir())
