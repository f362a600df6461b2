import pytest

from lmc_jax.config import ZooConfig, default_config
from lmc_jax.errors import LmcError


def test_study_settings_per_dataset():
  m = default_config("moons")
  assert (m.hidden, m.epochs, m.optimizer, m.lr, m.weight_decay, m.schedule, m.layernorm) == \
      ((512,), 100, "adamw", 0.1, 0.01, "cosine", "none")
  mn = default_config("mnist")
  assert (mn.hidden, mn.epochs, mn.schedule, mn.peak_lr, mn.layernorm) == \
      ((512, 512, 512), 60, "onecycle", 0.1, "before_relu")
  assert default_config("cifar10").layernorm == "before_relu"


@pytest.mark.parametrize("optimizer, want", [
    ("adamw", dict(weight_decay=0.1, peak_lr=1e-2)),
    ("sgd", dict(momentum=0.9, weight_decay=1e-2, peak_lr=1e-2)),
    ("rmsprop", dict(peak_lr=1e-5)),
    ("adagrad", dict(weight_decay=1e-2, peak_lr=1e-2)),
])
def test_cifar10_optimizer_flag_selects_the_studys_e8_settings(optimizer, want):
  c = default_config("cifar10", optimizer=optimizer)
  assert c.optimizer == optimizer and c.schedule == "onecycle" and c.epochs == 60
  for k, v in want.items():
    assert getattr(c, k) == v
  # An explicit flag still wins over the preset.
  assert default_config("cifar10", optimizer=optimizer, peak_lr=0.5).peak_lr == 0.5


def test_round_trip_and_validation():
  c = default_config("mnist", hidden=(8, 8, 8), num_models=3)
  assert ZooConfig.from_dict(c.to_dict()) == c
  with pytest.raises(LmcError, match="unknown keys"):
    ZooConfig.from_dict({**c.to_dict(), "colour": "red"})
  for bad in (dict(num_models=0), dict(epochs=-1), dict(batch_size=0), dict(lr=0.0)):
    with pytest.raises(LmcError):
      default_config("moons", **bad)


def test_zoo_directory_names_tell_configurations_apart():
  from lmc_jax.zoo.runs import zoo_dirname
  assert zoo_dirname(default_config("moons", hidden=(8,))) == "moons_w8"
  assert zoo_dirname(default_config("moons", init="kaiming_normal", optimizer="rmsprop")) == \
      "moons_kaiming_normal_rmsprop_w512"
  assert zoo_dirname(default_config("cifar10", optimizer="sgd", hidden=(64,) * 3)) == \
      "cifar10_sgd_w64"
  assert zoo_dirname(default_config("cifar10")) == "cifar10_w512"


def test_pytorch_exact_options_default_to_todays_behaviour():
  for dataset in ("moons", "mnist", "cifar10"):
    c = default_config(dataset)
    assert (c.cycle_momentum, c.layernorm_eps) == (False, 1e-6)
  # A zoo.json written before these fields existed loads as the same config.
  c = default_config("mnist", hidden=(8, 8, 8))
  old = {k: v for k, v in c.to_dict().items() if k not in ("cycle_momentum", "layernorm_eps")}
  assert ZooConfig.from_dict(old) == c
  new = default_config("mnist", cycle_momentum=True, layernorm_eps=1e-5,
                       schedule="onecycle_torch", init="kaiming_uniform_torch_bias")
  assert ZooConfig.from_dict(new.to_dict()) == new != default_config("mnist")


@pytest.mark.parametrize("bad, words", [
    (dict(layernorm_eps=0.0), "layernorm_eps"),
    (dict(layernorm_eps=-1e-5), "layernorm_eps"),
    (dict(layernorm_eps=float("inf")), "layernorm_eps"),
    (dict(layernorm_eps=float("nan")), "layernorm_eps"),
    (dict(cycle_momentum=True), "one-cycle"),  # moons: cosine
    (dict(cycle_momentum=True, schedule="constant"), "one-cycle"),
    (dict(cycle_momentum=True, schedule="onecycle", optimizer="adagrad"), "adagrad"),
])
def test_pytorch_exact_options_are_checked(bad, words):
  with pytest.raises(LmcError, match=words):
    default_config("moons", **bad)


def test_cycle_momentum_goes_with_either_one_cycle_schedule():
  for schedule in ("onecycle", "onecycle_torch"):
    for optimizer in ("adamw", "sgd", "rmsprop"):
      c = default_config("cifar10", schedule=schedule, optimizer=optimizer, cycle_momentum=True)
      assert c.cycle_momentum and c.schedule == schedule


def test_conv_architectures_take_a_width_multiplier_and_image_defaults():
  from lmc_jax.zoo.runs import zoo_dirname
  c = default_config("cifar10", arch="resnet20", hidden=(2,))
  assert (c.norm, c.augment, c.hidden) == ("batchnorm", "crop_flip", (2,))
  assert zoo_dirname(c) == "cifar10_resnet20_w2"
  m = default_config("mnist", arch="vgg_small", hidden=(1,), norm="layernorm")
  assert (m.norm, m.augment) == ("layernorm", "none")  # flipping digits changes them
  assert zoo_dirname(m) == "mnist_vgg_small_layernorm_w1"
  assert default_config("mnist").norm == "none" and default_config("mnist").arch == "mlp"
  for bad, word in ((dict(arch="resnet20"), "no images"),
                    (dict(arch="vgg", hidden=(4, 4)), "one width multiplier"),
                    (dict(arch="vgg", hidden=(0,)), "multiplier"),
                    (dict(arch="nope", hidden=(1,)), "Unknown --arch"),
                    (dict(arch="vgg", hidden=(1,), norm="groupnorm"), "Unknown --norm"),
                    (dict(augment="crop_flip"), "image dataset"),
                    (dict(train_subset=-1), "train_subset")):
    dataset = "moons" if bad.get("arch") == "resnet20" or "augment" in bad else "cifar10"
    with pytest.raises(LmcError, match=word):
      default_config(dataset, **bad)


@pytest.mark.parametrize("bad, words", [
    (dict(lr=float("nan")), ["--lr", "finite"]),
    (dict(lr=float("inf")), ["--lr", "finite"]),
    (dict(weight_decay=float("nan")), ["--weight_decay", "finite"]),
    (dict(weight_decay=-0.1), ["--weight_decay", ">= 0"]),
    (dict(noise=float("nan")), ["--noise", "finite"]),
    (dict(noise=-1.0), ["--noise", ">= 0"]),
    (dict(momentum=1.0), ["--momentum", "[0, 1)"]),
    (dict(peak_lr=0.0, schedule="onecycle"), ["--peak_lr", "> 0"]),
    (dict(seed=-1), ["--seed", "0..2147483647"]),
    (dict(seed=2 ** 32), ["--seed", "wrap"]),
    (dict(data_seed=2 ** 31), ["--data_seed"]),
    (dict(n_train=0), ["n_train"]),
])
def test_numbers_that_are_not_sane_are_refused_by_name(bad, words):
  with pytest.raises(LmcError) as e:
    default_config("moons", **bad)
  for w in words:
    assert w in str(e.value)


def test_the_largest_seed_is_accepted():
  assert default_config("moons", seed=2 ** 31 - 1).seed == 2 ** 31 - 1
