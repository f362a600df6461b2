"""The networks a zoo can hold, by the name in `ModelConfig.arch`: the study's MLP, the conv
nets of `nn.conv`, and any Flax module a user names as `package.module:Name`.

`build_network(model, data)` is the one place a network is made from a config: it checks
what the architecture needs of the config and the dataset (a conv net needs images) and
refuses the rest with a `ConfigError` naming the field. Everything else about an
architecture that code outside `nn` needs (how to label its width, the part of a zoo's
directory name that tells it apart, the defaults it asks for) is asked of it here, so
nothing outside `nn` branches on an architecture's name.

A user's module (`package.module:Name`, importable from PYTHONPATH) is a Flax module class
or a factory that returns one; it is called with the keyword arguments `width` (the one
entry of `model.hidden`) and `num_classes` (the dataset's classes; a binary dataset gets 2),
and `image_shape` (H, W, C) as well where its signature takes it and the dataset has
images. It is applied to the dataset's flat rows `(n, d)`, as the built-in networks are,
with `train=` where its `__call__` takes it (BatchNorm and other state then trains as the
built-in nets' does). Its logits decide the loss: one logit is a sigmoid, several a softmax.
"""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import flax.linen as nn

from lmc_jax.config import DEFAULT_ARCH, ConfigError, ModelConfig, register_arch_defaults
from lmc_jax.data.datasets import DatasetInfo, dataset_info, logits_for
from lmc_jax.nn.conv import CONV_ARCHS, make_conv_net
from lmc_jax.nn.models import make_mlp
from lmc_jax.nn.transformer import make_decoder, make_vit


class Architecture(NamedTuple):
  """What a named architecture is and asks for."""
  name: str
  help: str
  build: Callable[[ModelConfig, DatasetInfo], nn.Module]
  widths_per_layer: bool  # `model.hidden` lists one width per hidden layer (else one width)
  precisions: Tuple[str, ...]  # matmul precisions it can run (nn.precision)
  defaults: Callable[[str], dict]  # dataset name -> {field: value} it asks for
  blocks: bool = False  # `--depth` sets `model.blocks` (a transformer's) rather than widths


def _mlp(model: ModelConfig, data: DatasetInfo) -> nn.Module:
  return make_mlp(model.hidden, logits_for(data.num_classes), model.layernorm, model.init,
                  model.layernorm_eps, model.precision, model.activation)


def _conv(name: str):
  def build(model: ModelConfig, data: DatasetInfo) -> nn.Module:
    if data.image_shape is None:
      raise ConfigError("model.arch", f"is {name}, a convolutional net, and {data.name} has no "
                        "images; use an image dataset (mnist, cifar10, or an npz whose x are "
                        "images) or the MLP")
    _one_width(model)
    return make_conv_net(name, model.hidden[0], logits_for(data.num_classes), data.image_shape,
                         model.norm, model.init)
  return build


def _conv_defaults(dataset: str) -> dict:
  # BatchNorm as in the published VGG and ResNet-20; CIFAR-10's standard augmentation
  # (flipping digits would change them, so MNIST has none); one width multiplier.
  return {"hidden": (1,), "norm": "batchnorm",
          "augment": "crop_flip" if dataset == "cifar10" else "none"}


def _vit(model: ModelConfig, data: DatasetInfo) -> nn.Module:
  if data.image_shape is None:
    raise ConfigError("model.arch", f"is vit, a Vision Transformer, and {data.name} has no "
                      "images; use an image dataset (mnist, cifar10, or an npz of images)")
  _one_width(model)
  _flax_init(model)
  return make_vit(model.hidden[0], model.blocks, model.heads, model.patch, model.pool,
                  logits_for(data.num_classes), data.image_shape)


def _decoder(norm: str):
  def build(model: ModelConfig, data: DatasetInfo) -> nn.Module:
    if data.vocab is None:
      raise ConfigError("model.arch", f"is {model.arch}, which reads tokens, and {data.name} "
                        "has none; use --dataset=modular_addition (or --arch=vit for images)")
    _one_width(model)
    _flax_init(model)
    return make_decoder(model.hidden[0], model.blocks, model.heads, data.vocab,
                        logits_for(data.num_classes), norm)
  return build


def _flax_init(model: ModelConfig) -> None:
  if model.init != "default":
    raise ConfigError("model.init", f"is {model.init}, and {model.arch} takes Flax's own "
                      "initializers only; pass --init=default or leave it out")


def _transformer_defaults(dataset: str) -> dict:
  # Flax's initializers; MNIST's 28x28 in 16 patches of 7x7, CIFAR-10's 32x32 in 16 of 8x8;
  # four heads on the token task (the grokking literature's), two on images, where the
  # MLP's one-cycle peak of 0.1 (1e-2 on CIFAR-10) is too high for attention: 3e-3.
  images = {"lr": 1e-3, "peak_lr": 3e-3} if dataset in ("mnist", "cifar10") else {}
  return {"hidden": (1,), "init": "default", "patch": 8 if dataset == "cifar10" else 7,
          "heads": 4 if dataset == "modular_addition" else 2, **images}


ARCHITECTURES: Dict[str, Architecture] = {
    DEFAULT_ARCH: Architecture(DEFAULT_ARCH, "the study's MLP (--width: hidden widths)", _mlp,
                               True, ("fp32", "bf16"), lambda dataset: {}),
    **{name: Architecture(name, help, _conv(name), False, ("fp32",), _conv_defaults)
       for name, help in zip(CONV_ARCHS, ("VGG-11", "three conv stages of 16, 32, 64 channels",
                                          "the CIFAR ResNet-20"))},
    "vit": Architecture("vit", "Vision Transformer (--width x 32 features, --depth blocks, "
                        "--heads, --patch, --pool)", _vit, False, ("fp32",),
                        _transformer_defaults, blocks=True),
    "transformer": Architecture("transformer", "causal token transformer predicting at the "
                                "last position (--width x 32 features, --depth, --heads)",
                                _decoder("layernorm"), False, ("fp32",), _transformer_defaults,
                                blocks=True),
    "rms_transformer": Architecture("rms_transformer", "the causal token transformer with a "
                                    "scale-free RMSNorm stream, which rotates exactly (align it "
                                    "by --align=orthogonal)", _decoder("rms"), False, ("fp32",),
                                    _transformer_defaults, blocks=True),
}
for _arch in ARCHITECTURES.values():
  register_arch_defaults(_arch.name, _arch.defaults)

USER_ARCH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def is_user_arch(arch: str) -> bool:
  """True for `package.module:Name`."""
  return bool(USER_ARCH.fullmatch(arch))


def _one_width(model: ModelConfig) -> None:
  if len(model.hidden) != 1:
    raise ConfigError("model.hidden", f"must be one width multiplier for {model.arch}, got "
                      f"{list(model.hidden)}; pass one width and no depth")


def _user_network(model: ModelConfig, data: DatasetInfo) -> nn.Module:
  module_name, _, attr = model.arch.partition(":")
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # noqa: BLE001 - any import failure is the user's module
    raise ConfigError("model.arch", f"names {model.arch}, but {module_name} cannot be imported "
                      f"({type(e).__name__}: {e}); put it on PYTHONPATH") from None
  factory = getattr(module, attr, None)
  if factory is None or not callable(factory):
    raise ConfigError("model.arch", f"names {model.arch}, but {module_name} has no callable "
                      f"{attr}; name a Flax module class or a function that returns one")
  _one_width(model)
  kwargs = dict(width=int(model.hidden[0]), num_classes=int(data.num_classes))
  if data.image_shape is not None and _accepts(factory, "image_shape"):
    kwargs["image_shape"] = tuple(data.image_shape)
  try:
    net = factory(**kwargs)
  except Exception as e:  # noqa: BLE001
    raise ConfigError("model.arch", f"names {model.arch}, which failed when called with "
                      f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items())} "
                      f"({type(e).__name__}: {e}); it must take width= and num_classes=") from None
  if not isinstance(net, nn.Module):
    raise ConfigError("model.arch", f"names {model.arch}, which returned a "
                      f"{type(net).__name__}, not a flax.linen.Module")
  return net


def _accepts(factory, name: str) -> bool:
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return False
  return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def architecture(arch: str) -> Optional[Architecture]:
  """The built-in architecture `arch`, or None for a user's `package.module:Name`; an
  unknown name is refused."""
  if arch in ARCHITECTURES:
    return ARCHITECTURES[arch]
  if is_user_arch(arch):
    return None
  raise ConfigError("model.arch", f"must be one of {', '.join(ARCHITECTURES)} or "
                    f"package.module:Name, got {arch!r}")


def build_network(model: ModelConfig, data: DatasetInfo) -> nn.Module:
  """The Flax module of one model of a zoo: `model` (checked) on dataset `data` (its inputs
  and classes)."""
  model.validate()
  arch = architecture(model.arch)
  precisions = arch.precisions if arch is not None else ("fp32",)
  if model.precision not in precisions:
    raise ConfigError("model.precision", f"is {model.precision}, which {model.arch} does not "
                      f"run (it takes {', '.join(precisions)})")
  if model.activation != "relu" and not (arch is not None and arch.widths_per_layer):
    raise ConfigError("model.activation", f"is {model.activation}, which only the MLP takes "
                      f"({model.arch} chooses its own); leave it at relu or use --arch=mlp")
  if arch is None:
    return _user_network(model, data)
  return arch.build(model, data)


def takes_depth(arch: str) -> bool:
  """Whether `model.hidden` of `arch` lists one width per hidden layer (a depth)."""
  found = architecture(arch)
  return found is not None and found.widths_per_layer


def width_label(model: ModelConfig) -> str:
  """The x-axis label of a width study of `model`'s architecture."""
  if takes_depth(model.arch):
    return "hidden layer width (log2 axis)"
  what = "width" if architecture(model.arch) is None else "width multiplier"
  return f"{what} of {display_name(model.arch)} (log2 axis)"


def describe_width(model: ModelConfig) -> str:
  """`hidden widths [512, 512]`, or `resnet20 at width multiplier 4`."""
  if takes_depth(model.arch):
    return f"hidden widths {list(model.hidden)}"
  what = "width" if architecture(model.arch) is None else "width multiplier"
  return f"{display_name(model.arch)} at {what} {model.hidden[0]}"


def display_name(arch: str) -> str:
  """The architecture's name as labels show it (a user's module by its own name)."""
  return arch.rpartition(":")[2] if is_user_arch(arch) else arch


def family_part(model: ModelConfig) -> str:
  """What a zoo's directory name adds for the architecture: nothing for the study's MLP
  (its activation where that is not ReLU),
  the name (and a norm other than BatchNorm) for a conv net, the module's name for a
  user's."""
  arch = architecture(model.arch)
  if arch is not None and arch.widths_per_layer:
    return "" if model.activation == "relu" else model.activation
  if arch is None:
    return re.sub(r"[^A-Za-z0-9_-]", "_", display_name(model.arch))
  if arch.blocks:  # blocks and heads where not one block; the class token where read
    return "_".join([model.arch] + ([f"d{model.blocks}h{model.heads}"] if model.blocks != 1
                                    else []) + (["cls"] if model.pool == "cls" else []))
  return model.arch + ("" if model.norm == "batchnorm" else f"_{model.norm}")


def takes_blocks(arch: str) -> bool:
  """Whether `--depth` of `arch` sets `model.blocks` (a transformer's)."""
  found = architecture(arch)
  return found is not None and found.blocks


def names() -> Tuple[str, ...]:
  """The built-in architectures."""
  return tuple(ARCHITECTURES)


def model_for(config) -> nn.Module:
  """The network of one model of the zoo a `ZooConfig` describes: its model section on its
  dataset."""
  return build_network(config.model, dataset_info(config.data))


def model_at(config, precision: str) -> nn.Module:
  """The network of `config` with its matmuls at `precision` (a sweep or plane measured in
  bf16 of a zoo trained in fp32, or the other way round)."""
  return build_network(config.model.replace(precision=precision), dataset_info(config.data))
