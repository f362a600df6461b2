"""Counts and sizes below their minimum are refused by their own name, in the library and on
every entry point's command line; a zoo's directory name says what it holds; the lock's
refusal names the holder's kind; a file given as a zoo is called a file."""
import pytest
from absl import flags
from absl.flags import FLAGS

from lmc_jax.align.registry import MethodSettings
from lmc_jax.config import ConfigError, default_config
from lmc_jax.dir_lock import DirLock
from lmc_jax.errors import LmcError
from lmc_jax.zoo.io import read_zoo_json
from lmc_jax.zoo.runs import zoo_dirname
from tests.helpers.cli import cli_module, refused, run_cli, snapshot


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("epochs", -1), ("num_models", 0), ("batch_size", 0), ("n_train", 1),
    ("n_test", 0), ("train_subset", -1), ("test_subset", -1), ("hidden", (0,)),
    ("hidden", ()), ("seed", -1), ("data_seed", -1)])
def test_config_counts_below_their_minimum(field, value):
  with pytest.raises(ConfigError) as e:
    default_config("moons", **{field: value})
  assert e.value.field.endswith(field), e.value.field


@pytest.mark.parametrize("setting,value", [
    ("max_iter", 0), ("fit_samples", 0), ("seed", -1), ("ste_steps", 0), ("sinkhorn_steps", 0),
    ("mergemany_rounds", 0), ("ste_lr", 0.0), ("sinkhorn_lr", -1.0), ("exact_max_tflop", 0.0),
    ("max_iter", 1.5)])
def test_alignment_settings_below_their_minimum(setting, value):
  with pytest.raises(ConfigError, match=f"settings.{setting} must be"):
    MethodSettings(**{setting: value})
  MethodSettings(max_iter=1, fit_samples=1, ste_lr=1e-9)  # the minimums themselves pass


# (entry point, flags that must each be refused, the words of each refusal)
CASES = {
    "zoo": [("--epochs=0", "--epochs must be >= 1"), ("--depth=0", "--depth must be >= 1"),
            ("--depth=-1", "--depth must be >= 1"), ("--num_models=0", "--num_models"),
            ("--batch_size=0", "--batch_size"), ("--eval_every=-1", "--eval_every"),
            ("--checkpoint_minutes=-1", "--checkpoint_minutes")],
    "barrier": [("--max_iter=0", "--max_iter must be >= 1"), ("--reference=-1", "--reference"),
                ("--bn_reset_batches=-1", "--bn_reset_batches"), ("--fit_samples=0",
                                                                  "--fit_samples"),
                ("--ste_steps=0", "--ste_steps"), ("--sinkhorn_lr=0", "--sinkhorn_lr")],
    "plane": [("--resolution=1", "--resolution"), ("--max_iter=0", "--max_iter"),
              ("--margin=-0.5", "--margin")],
    "swa": [("--epochs=0", "--epochs"), ("--lr=0", "--lr"), ("--model=-1", "--model")],
    "dynamics": [("--max_iter=0", "--max_iter"), ("--seed=-1", "--seed")],
    "redundancy": [("--threshold=2", "--threshold"), ("--reference=-1", "--reference")],
    "bench": [("--num_models=1", "--num_models"), ("--epochs=0", "--epochs"),
              ("--align_models=1", "--align_models"), ("--baseline_pairs=0",
                                                       "--baseline_pairs")],
}

# Each entry point's own checks of its flags, beyond absl's (`cli` is its module).
CHECKS = {"zoo": lambda cli: (cli.run_options_from_flags(), cli.config_from_flags(4)),
          "barrier": lambda cli: cli.method_settings()}


def test_every_count_flag_is_refused_by_its_name():
  """Each flag parsed alone as its entry point parses it (its flags, then its checks)."""
  for name, cases in CASES.items():
    cli = cli_module(name)
    for arg, words in cases:
      try:
        FLAGS(["prog", "--zoo=z", arg] if "zoo" in FLAGS else ["prog", arg])
        CHECKS.get(name, lambda cli: None)(cli)
        error = None
      except (flags.Error, LmcError) as e:
        error = str(e)
      finally:
        FLAGS.unparse_flags()
      assert error is not None and words in error, (name, arg, error)


def test_epochs_zero_on_the_command_line_writes_nothing(tmp_path):
  refused(run_cli("zoo", f"--out={tmp_path / 'runs'}", "--width=4", "--epochs=0"),
          "--epochs must be >= 1")
  assert not (tmp_path / "runs").exists()


def test_a_zoo_directory_name_says_what_it_holds():
  assert zoo_dirname(default_config("moons", hidden=(8,))) == "moons_w8"
  assert zoo_dirname(default_config("moons", hidden=(8, 8))) == "moons_d2_w8"
  assert zoo_dirname(default_config("mnist", hidden=(32,))) == "mnist_d1_w32"
  assert zoo_dirname(default_config("mnist", hidden=(32,) * 3)) == "mnist_w32"
  assert zoo_dirname(default_config("moons", hidden=(8, 4))) == "moons_d2_w8-4"
  assert zoo_dirname(default_config("cifar10", arch="resnet20", hidden=(2,))) == \
      "cifar10_resnet20_w2"
  names = {zoo_dirname(default_config("moons", hidden=(4,) * d)) for d in (1, 2, 3)}
  assert len(names) == 3


def test_the_lock_refusal_names_the_holders_kind(tmp_path):
  d = tmp_path / "moons_w4"
  with DirLock(d, "barrier analysis"):
    with pytest.raises(LmcError, match="in use by another lmc_jax barrier analysis") as e:
      with DirLock(d, "zoo run"):
        pass
  assert "zoo run" not in str(e.value)
  assert snapshot(tmp_path, folders=True) == {}  # the folder it made is gone again


def test_a_file_given_as_a_zoo_is_called_a_file(tmp_path):
  f = tmp_path / "zoo.json"
  f.write_text("{}")
  with pytest.raises(LmcError, match=f"{f} is a file, not a zoo directory"):
    read_zoo_json(f)
  with pytest.raises(LmcError, match="does not exist"):
    read_zoo_json(tmp_path / "nope")
