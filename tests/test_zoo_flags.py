"""The zoo command's PyTorch-exact options: documented in --help, passed into the config,
refused cleanly when they make no sense."""
import json

from absl.flags import FLAGS

from tests.helpers.cli import cli_module, run_cli, run_module


def test_help_lists_the_pytorch_exact_options():
  r = run_module("zoo", "--help")  # absl's --help exits 1
  for word in ("--[no]cycle_momentum", "--layernorm_eps", "onecycle_torch",
               "kaiming_normal_torch_bias", "kaiming_uniform_torch_bias"):
    assert word in r.stdout


def _config(*args):
  zoo = cli_module("zoo")
  try:
    FLAGS(["zoo", *args])
    return json.loads(json.dumps(zoo.config_from_flags(8).to_dict()))  # as zoo.json holds it
  finally:
    FLAGS.unparse_flags()


def test_flags_reach_the_config():
  c = _config("--dataset=mnist", "--cycle_momentum", "--schedule=onecycle_torch",
              "--layernorm_eps=1e-5", "--init=kaiming_normal_torch_bias")
  optim, model = c["optim"], c["model"]
  assert (optim["cycle_momentum"], optim["schedule"], model["layernorm_eps"], model["init"]) == \
      (True, "onecycle_torch", 1e-5, "kaiming_normal_torch_bias")
  c = _config("--dataset=mnist")
  assert (c["optim"]["cycle_momentum"], c["optim"]["schedule"], c["model"]["layernorm_eps"]) == \
      (False, "onecycle", 1e-6)
  c = _config("--dataset=mnist", "--width=8", "--depth=2", "--num_models=3", "--lr=0.5")
  assert (c["model"]["hidden"], c["train"]["num_models"], c["optim"]["lr"]) == ([8, 8], 3, 0.5)


def test_bad_options_are_refused_in_one_line(tmp_path):
  for flags, word in ((["--cycle_momentum"], "one-cycle"),  # moons: cosine
                      (["--layernorm_eps=0"], "--layernorm_eps must be > 0"),
                      (["--depth=0"], "--depth must be >= 1"),
                      (["--checkpoint_every=-1"], "--checkpoint_every must be >= 0"),
                      (["--dataset=cifar10", "--optimizer=adagrad", "--cycle_momentum"],
                       "adagrad")):
    r = run_cli("zoo", "--width=4", f"--out={tmp_path}", *flags)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and word in errors[0], r.stderr
  assert not any(tmp_path.iterdir())


def test_bad_conv_flags_are_refused(tmp_path):
  for flags, word in ((["--arch=resnet20"], "--arch is resnet20, a convolutional net, and moons "
                                          "has no images"),
                      (["--dataset=cifar10", "--arch=vgg_small", "--width=0"], "--width holds a "
                       "width below 1"),
                      (["--dataset=cifar10", "--arch=vgg_small", "--depth=2"], "drop --depth"),
                      (["--arch=nope"], "--arch must be one of mlp, vgg, vgg_small, resnet20, "
                       "vit, transformer, rms_transformer or package.module:Name, got 'nope'"),
                      (["--augment=crop_flip"], "--augment is crop_flip, which needs images")):
    r = run_cli("zoo", "--width=4", f"--out={tmp_path}", *flags)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and word in errors[0], r.stderr
  assert not any(tmp_path.iterdir())
