import dataclasses

import pytest

from lmc_jax.config import (
  SECTION_OF,
  SECTIONS,
  ConfigError,
  DataConfig,
  ModelConfig,
  OptimConfig,
  RunOptions,
  TrainConfig,
  ZooConfig,
  default_config,
)
from lmc_jax.data.datasets import dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import model_for
from lmc_jax.zoo.training import augment_shape


def test_study_settings_per_dataset():
  m = default_config("moons")
  assert (m.model.hidden, m.train.epochs, m.optim.optimizer, m.optim.lr, m.optim.weight_decay,
          m.optim.schedule, m.model.layernorm) == ((512,), 100, "adamw", 0.1, 0.01, "cosine",
                                                   "none")
  mn = default_config("mnist")
  assert (mn.model.hidden, mn.train.epochs, mn.optim.schedule, mn.optim.peak_lr,
          mn.model.layernorm) == ((512, 512, 512), 60, "onecycle", 0.1, "before_relu")
  assert default_config("cifar10").model.layernorm == "before_relu"


@pytest.mark.parametrize("optimizer, want", [
    ("adamw", dict(weight_decay=0.1, peak_lr=1e-2)),
    ("sgd", dict(momentum=0.9, weight_decay=1e-2, peak_lr=1e-2)),
    ("rmsprop", dict(peak_lr=1e-5)),
    ("adagrad", dict(weight_decay=1e-2, peak_lr=1e-2)),
])
def test_cifar10_optimizer_flag_selects_the_studys_e8_settings(optimizer, want):
  c = default_config("cifar10", optimizer=optimizer)
  assert c.optim.optimizer == optimizer and c.optim.schedule == "onecycle" and c.train.epochs == 60
  for k, v in want.items():
    assert getattr(c.optim, k) == v
  # An explicit flag still wins over the preset.
  assert default_config("cifar10", optimizer=optimizer, peak_lr=0.5).optim.peak_lr == 0.5


def test_sections_hold_every_field_once_and_each_layer_its_own():
  names = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
  assert len(names) == len(set(names)) == len(SECTION_OF)
  assert {f.name for f in dataclasses.fields(DataConfig)} == {
      "dataset", "data_seed", "n_train", "n_test", "noise", "train_subset", "test_subset",
      "train_split", "modulus", "train_fraction"}
  assert {f.name for f in dataclasses.fields(ModelConfig)} == {
      "arch", "hidden", "norm", "layernorm", "activation", "layernorm_eps", "init", "precision",
      "blocks", "heads", "patch", "pool"}
  assert {f.name for f in dataclasses.fields(OptimConfig)} == {
      "optimizer", "lr", "peak_lr", "weight_decay", "momentum", "schedule", "cycle_momentum"}
  assert {f.name for f in dataclasses.fields(TrainConfig)} == {
      "num_models", "epochs", "batch_size", "augment", "seed"}
  c = default_config("moons", hidden=(8,), lr=0.5, num_models=3)
  assert c.replace(lr=0.25).optim == c.optim.replace(lr=0.25)
  assert c.replace(model=c.model.replace(hidden=(4,))).model.hidden == (4,)
  with pytest.raises(LmcError, match="ZooConfig has no field 'colour'"):
    c.replace(colour="red")


def test_round_trip_and_validation():
  c = default_config("mnist", hidden=(8, 8, 8), num_models=3)
  doc = c.to_dict()
  assert set(doc) == {"data", "model", "optim", "train"} and doc["model"]["hidden"] == [8, 8, 8]
  assert ZooConfig.from_dict(doc) == c
  with pytest.raises(ConfigError, match="config has unknown sections"):
    ZooConfig.from_dict({**doc, "colour": "red"})
  with pytest.raises(ConfigError, match=r"model has unknown keys \['colour'\]"):
    ZooConfig.from_dict({**doc, "model": {**doc["model"], "colour": "red"}})
  for bad, field in ((dict(num_models=0), "train.num_models"), (dict(epochs=-1), "train.epochs"),
                     (dict(batch_size=0), "train.batch_size"), (dict(lr=0.0), "optim.lr")):
    with pytest.raises(ConfigError) as e:
      default_config("moons", **bad)
    assert e.value.field == field and str(e.value).startswith(f"{field} must be ")


def test_a_flat_config_of_earlier_versions_loads_into_its_sections():
  c = default_config("mnist", hidden=(8, 8, 8), num_models=3, init="kaiming_normal")
  flat = {f: getattr(getattr(c, SECTION_OF[f]), f) for f in SECTION_OF}
  flat["hidden"] = list(flat["hidden"])
  assert ZooConfig.from_dict(flat) == c
  with pytest.raises(ConfigError, match=r"config has unknown keys \['colour'\]"):
    ZooConfig.from_dict({**flat, "colour": "red"})


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
    assert (c.optim.cycle_momentum, c.model.layernorm_eps) == (False, 1e-6)
  # A zoo.json written before these fields existed loads as the same config.
  c = default_config("mnist", hidden=(8, 8, 8))
  doc = c.to_dict()
  del doc["optim"]["cycle_momentum"], doc["model"]["layernorm_eps"]
  assert ZooConfig.from_dict(doc) == c
  new = default_config("mnist", cycle_momentum=True, layernorm_eps=1e-5,
                       schedule="onecycle_torch", init="kaiming_uniform_torch_bias")
  assert ZooConfig.from_dict(new.to_dict()) == new != default_config("mnist")


@pytest.mark.parametrize("bad, words", [
    (dict(layernorm_eps=0.0), "model.layernorm_eps"),
    (dict(layernorm_eps=-1e-5), "model.layernorm_eps"),
    (dict(layernorm_eps=float("inf")), "model.layernorm_eps"),
    (dict(layernorm_eps=float("nan")), "model.layernorm_eps"),
    (dict(cycle_momentum=True), "one-cycle"),  # moons: cosine
    (dict(cycle_momentum=True, schedule="constant"), "one-cycle"),
    (dict(cycle_momentum=True, schedule="onecycle", optimizer="adagrad"), "adagrad"),
])
def test_pytorch_exact_options_are_checked(bad, words):
  with pytest.raises(ConfigError, match=words):
    default_config("moons", **bad)


def test_cycle_momentum_goes_with_either_one_cycle_schedule():
  for schedule in ("onecycle", "onecycle_torch"):
    for optimizer in ("adamw", "sgd", "rmsprop"):
      c = default_config("cifar10", schedule=schedule, optimizer=optimizer, cycle_momentum=True)
      assert c.optim.cycle_momentum and c.optim.schedule == schedule


def test_conv_architectures_take_a_width_multiplier_and_image_defaults():
  from lmc_jax.zoo.runs import zoo_dirname
  c = default_config("cifar10", arch="resnet20", hidden=(2,))
  assert (c.model.norm, c.train.augment, c.model.hidden) == ("batchnorm", "crop_flip", (2,))
  assert default_config("cifar10", arch="resnet20").model.hidden == (1,)
  assert zoo_dirname(c) == "cifar10_resnet20_w2"
  m = default_config("mnist", arch="vgg_small", hidden=(1,), norm="layernorm")
  assert (m.model.norm, m.train.augment) == ("layernorm", "none")  # flipping digits changes them
  assert zoo_dirname(m) == "mnist_vgg_small_layernorm_w1"
  assert default_config("mnist").model.norm == "none"
  assert default_config("mnist").model.arch == "mlp"
  # Refused where the config is made (field bounds) or where the network is built.
  for dataset, bad, word in (("cifar10", dict(arch="vgg", hidden=(0,)), "model.hidden"),
                             ("cifar10", dict(arch="vgg", hidden=(1,), norm="groupnorm"),
                              "model.norm must be one of"),
                             ("cifar10", dict(train_subset=-1), "data.train_subset")):
    with pytest.raises(ConfigError, match=word):
      default_config(dataset, **bad)
  for dataset, bad, word in (("moons", dict(arch="resnet20"), "no images"),
                             ("cifar10", dict(arch="vgg", hidden=(4, 4)), "one width"),
                             ("cifar10", dict(arch="nope", hidden=(1,)),
                              "model.arch must be one of")):
    with pytest.raises(ConfigError, match=word):
      model_for(default_config(dataset, **bad))
  moons = default_config("moons", augment="crop_flip")
  with pytest.raises(ConfigError, match="train.augment is crop_flip, which needs images"):
    augment_shape(moons, dataset_info(moons.data))


@pytest.mark.parametrize("bad, words", [
    (dict(lr=float("nan")), ["optim.lr", "finite"]),
    (dict(lr=float("inf")), ["optim.lr", "finite"]),
    (dict(weight_decay=float("nan")), ["optim.weight_decay", "finite"]),
    (dict(weight_decay=-0.1), ["optim.weight_decay", ">= 0"]),
    (dict(noise=float("nan")), ["data.noise", "finite"]),
    (dict(noise=-1.0), ["data.noise", ">= 0"]),
    (dict(momentum=1.0), ["optim.momentum", "< 1"]),
    (dict(peak_lr=0.0, schedule="onecycle"), ["optim.peak_lr", "> 0"]),
    (dict(seed=-1), ["train.seed", ">= 0"]),
    (dict(seed=2 ** 32), ["train.seed", "<= 2147483647", "wrap"]),
    (dict(data_seed=2 ** 31), ["data.data_seed"]),
    (dict(n_train=0), ["data.n_train"]),
])
def test_numbers_that_are_not_sane_are_refused_by_name(bad, words):
  with pytest.raises(ConfigError) as e:
    default_config("moons", **bad)
  for w in words:
    assert w in str(e.value)


def test_the_largest_seed_is_accepted():
  assert default_config("moons", seed=2 ** 31 - 1).train.seed == 2 ** 31 - 1


def test_run_options_are_checked_by_field():
  assert RunOptions().validate().checkpoint_minutes == 10.0
  with pytest.raises(ConfigError, match="run.checkpoint_every must be >= 0"):
    RunOptions(checkpoint_every=-1).validate()
