"""Convolutional nets for zoos of image classifiers, as Flax Linen modules.

Inputs arrive flat, `(n, d)` float32 with `d = H * W * C`, as every dataset of the library
is stored; each module reshapes them to images `(n, H, W, C)` from its `image_shape`. A
flat row is in HWC order (`cifar10.normalise` flattens uint8 `(n, 32, 32, 3)` images; MNIST
is `(n, 28, 28)` with C = 1), so the reshape is a plain one with no transpose. The output
is logits `(n, num_classes)`.

`norm` is 'none', 'layernorm' (over the channel axis of each pixel) or 'batchnorm'
(PyTorch's defaults: momentum 0.1 of the new batch, i.e. Flax momentum 0.9, epsilon 1e-5).
With 'batchnorm', `apply(..., train=True)` needs `mutable=["batch_stats"]`; `train=False`
normalises with the running statistics. Convs followed by a norm have no bias.

Layer names (the `/`-joined paths of `params.npz` and of a permutation spec):
  VGG: conv layer i is `Conv_i` with its norm `LayerNorm_i` or `BatchNorm_i` (i counts
    convs, not pools); the readout is `Dense_0`.
  ResNet20: the stem is `Conv_0` + `{Norm}_0`; basic block k = 0..8 (stage k // 3) is
    `Block_k` holding `Conv_0`, `{Norm}_0`, `Conv_1`, `{Norm}_1` and, in Block_3 and
    Block_6 only (the stride-2 stage transitions), the projection shortcut `Conv_shortcut`
    (1x1) + `{Norm}_shortcut`; the readout is `Dense_0`. `{Norm}` is LayerNorm or BatchNorm.
Kernels (and biases) use `models.initializers(init_scheme, fan_in)` with fan_in = kh * kw *
c_in; the 'pytorch' default is nn.Conv2d's and nn.Linear's U(+-1/sqrt(fan_in)). Norm scale
starts at 1 and bias at 0.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.config import NORMS
from lmc_jax.errors import LmcError
from lmc_jax.nn import native_conv
from lmc_jax.nn.conv_grad import conv_general_dilated as matmul_kernel_grad_conv
from lmc_jax.nn.models import initializers
from lmc_jax.nn.pooling import max_pool_2x2

CONV_ARCHS = ("vgg", "vgg_small", "resnet20")
# VGG-11 for 32x32 images (Simonyan & Zisserman's config A with the CIFAR global-pool head):
# channels per 3x3 conv, "M" a 2x2 max pool. Five pools need images of at least 32x32.
VGG11_STAGES = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
# The same without its last pool, the default for images from 16x16 up to 31x31 (MNIST's
# 28x28 goes 28 -> 14 -> 7 -> 3 -> 1; PyTorch-style floor pooling drops an odd last row).
VGG11_STAGES_SMALL = VGG11_STAGES[:-1]
# `vgg_small`: three conv stages of 16, 32, 64 channels (times the width), each followed by a
# pool; about 1/200 of VGG-11's multiply-adds on 32x32, sized for width studies on a CPU.
SMALL_VGG_STAGES = (16, "M", 32, "M", 64, "M")
RESNET20_DOWNSAMPLING = 4  # two stride-2 stages
# How each convolution and its gradients are computed: 'lax' (XLA's convolution, and JAX's
# own transpose for the kernel gradient), 'matmul' (XLA's convolution, the kernel gradient
# as patches times the output gradient, `nn.conv_grad`) or 'native' (lmc_jax's compiled CPU
# kernels for the stride-1 convolutions and all their gradients, `nn.native_conv`; the
# others as 'matmul'). 'auto' is 'native' where the default backend is a CPU and the kernels
# compile, 'matmul' on a CPU where they do not, and 'lax' elsewhere (an accelerator's
# library has its own kernels). Same parameters; outputs and gradients equal to float32
# rounding (BUILD_NOTES has the speeds).
KERNEL_GRADS = ("auto", "lax", "matmul", "native")

_CONVOLUTIONS = {"lax": None, "matmul": matmul_kernel_grad_conv,
                 "native": native_conv.conv_general_dilated}


def resolved_kernel_grad(kernel_grad: str) -> str:
  """'lax', 'matmul' or 'native' for one of KERNEL_GRADS ('auto' by the default backend and
  whether the compiled kernels are available; 'native' itself falls back to 'matmul' where
  they are not)."""
  if kernel_grad not in KERNEL_GRADS:
    raise LmcError(f"Unknown kernel_grad {kernel_grad!r}; use one of {', '.join(KERNEL_GRADS)}.")
  if kernel_grad == "auto":
    if jax.default_backend() != "cpu":
      return "lax"
    kernel_grad = "native"
  if kernel_grad == "native" and not native_conv.available():
    return "matmul"
  return kernel_grad

def convolution_note() -> str:
  """What `kernel_grad='auto'` runs here, in words: the compiled kernels, or XLA's and why."""
  chosen = resolved_kernel_grad("auto")
  if chosen == "native":
    return "lmc_jax's compiled CPU kernels (kernel_grad='native')"
  why = (native_conv.unavailable_reason() if jax.default_backend() == "cpu"
         else f"the default backend is {jax.default_backend()}")
  return f"XLA's (kernel_grad={chosen!r}; the compiled kernels are not used: {why})"


Stage = Union[int, str]


def _check_image_shape(image_shape) -> Tuple[int, int, int]:
  shape = tuple(int(s) for s in image_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise LmcError(f"Image shape {tuple(image_shape)} is not (H, W, C) with every size >= 1; "
                   "pass e.g. (32, 32, 3).")
  return shape


def _check_norm(norm: str):
  if norm not in NORMS:
    raise LmcError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


def default_vgg_stages(image_shape) -> Tuple[Stage, ...]:
  """VGG11_STAGES for images of at least 32x32, VGG11_STAGES_SMALL (four pools) below."""
  h, w, _ = _check_image_shape(image_shape)
  return VGG11_STAGES if min(h, w) >= 32 else VGG11_STAGES_SMALL


def _check_vgg_fits(stages, image_shape):
  """Raises unless every 2x2 pool of `stages` has at least one output pixel."""
  h, w, _ = _check_image_shape(image_shape)
  bad = [s for s in stages if s != "M" and not (isinstance(s, (int, np.integer)) and s >= 1)]
  if bad:
    raise LmcError(f"VGG stages {list(stages)} hold {bad[0]!r}; every entry must be a channel "
                   "count >= 1 or 'M' for a max pool.")
  pools = sum(1 for s in stages if s == "M")
  if min(h, w) < 2 ** pools:
    raise LmcError(f"A {h}x{w} image is too small for VGG stages with {pools} max pools; "
                   f"use images of at least {2 ** pools}x{2 ** pools} or fewer 'M' entries.")


def _to_images(x, image_shape):
  """Flat `(n, H*W*C)` rows in HWC order -> images `(n, H, W, C)`."""
  if x.shape[-1] != int(np.prod(image_shape)):
    raise LmcError(f"Inputs have {x.shape[-1]} features but image_shape {tuple(image_shape)} "
                   f"needs {int(np.prod(image_shape))}; pass the dataset's image shape.")
  return x.reshape(x.shape[:-1] + tuple(image_shape))


def _norm(norm: str, name: str, train: bool):
  """The norm layer `{LayerNorm,BatchNorm}_{name}` as a function, or the identity."""
  if norm == "none":
    return lambda h: h
  if norm == "layernorm":
    return nn.LayerNorm(name=f"LayerNorm_{name}")
  if norm == "batchnorm":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        name=f"BatchNorm_{name}")
  _check_norm(norm)


def _conv(features: int, c_in: int, size: int, stride: int, norm: str, init: str, name: str,
          kernel_grad: str = "auto"):
  """A `size`x`size` conv with PyTorch's padding (size // 2 each side), biased iff no norm;
  `kernel_grad` one of KERNEL_GRADS."""
  kernel_grad = resolved_kernel_grad(kernel_grad)
  k_init, b_init = initializers(init, size * size * c_in)
  p = size // 2
  return nn.Conv(features, (size, size), strides=(stride, stride), padding=((p, p), (p, p)),
                 use_bias=norm == "none", kernel_init=k_init, bias_init=b_init, name=name,
                 conv_general_dilated=_CONVOLUTIONS[kernel_grad])


def _readout(num_classes: int, fan_in: int, init: str):
  k_init, b_init = initializers(init, fan_in)
  return nn.Dense(num_classes, kernel_init=k_init, bias_init=b_init, name="Dense_0")


class VGG(nn.Module):
  """Conv 3x3 -> norm -> ReLU per entry of `stages` ("M": 2x2 max pool, stride 2), then
  global average pooling and a Dense readout.

  Attributes:
    stages: channels per conv (times `width`) and "M" pools; None picks
      `default_vgg_stages(image_shape)` (VGG-11, with four pools below 32x32).
    width: multiplier of every channel count.
    num_classes: number of logits.
    norm: one of NORMS.
    image_shape: (H, W, C) of one input row.
    init_scheme: one of `models.INITS`.
    kernel_grad: one of KERNEL_GRADS.
  """
  stages: Optional[Sequence[Stage]] = None
  width: int = 1
  num_classes: int = 10
  norm: str = "none"
  image_shape: Sequence[int] = (32, 32, 3)
  init_scheme: str = "pytorch"
  kernel_grad: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Logits `(n, num_classes)` of flat images `x` `(n, H*W*C)`."""
    stages = self.stages if self.stages is not None else default_vgg_stages(self.image_shape)
    _check_vgg_fits(stages, self.image_shape)
    h = _to_images(x, self.image_shape)
    i = 0
    for s in stages:
      if s == "M":
        h = max_pool_2x2(h)  # nn.max_pool's value and gradient, a faster gradient
        continue
      h = _conv(int(s) * self.width, h.shape[-1], 3, 1, self.norm, self.init_scheme,
                f"Conv_{i}", self.kernel_grad)(h)
      h = nn.relu(_norm(self.norm, str(i), train)(h))
      i += 1
    h = jnp.mean(h, axis=(-3, -2))
    return _readout(self.num_classes, h.shape[-1], self.init_scheme)(h)


class BasicBlock(nn.Module):
  """He et al.'s basic block on images `(n, H, W, C_in)` -> `(n, H/stride, W/stride,
  features)`: conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the shortcut (identity, or
  1x1 conv -> norm where the shape changes), then ReLU."""
  features: int
  stride: int = 1
  norm: str = "none"
  init_scheme: str = "pytorch"
  kernel_grad: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    c_in = x.shape[-1]
    h = _conv(self.features, c_in, 3, self.stride, self.norm, self.init_scheme, "Conv_0",
              self.kernel_grad)(x)
    h = nn.relu(_norm(self.norm, "0", train)(h))
    h = _conv(self.features, self.features, 3, 1, self.norm, self.init_scheme, "Conv_1",
              self.kernel_grad)(h)
    h = _norm(self.norm, "1", train)(h)
    if self.stride != 1 or c_in != self.features:
      x = _conv(self.features, c_in, 1, self.stride, self.norm, self.init_scheme,
                "Conv_shortcut", self.kernel_grad)(x)
      x = _norm(self.norm, "shortcut", train)(x)
    return nn.relu(h + x)


class ResNet20(nn.Module):
  """The CIFAR ResNet-20 of He et al. 2016 with projection (1x1 conv) shortcuts: a 3x3 conv
  of 16*width channels -> norm -> ReLU, three stages of three basic blocks (16, 32, 64 times
  width channels; stages 2 and 3 start with stride 2), global average pooling, Dense.

  Attributes:
    width: multiplier of every channel count.
    num_classes: number of logits.
    norm: one of NORMS.
    image_shape: (H, W, C) of one input row; H and W must be at least 4.
    init_scheme: one of `models.INITS`.
    kernel_grad: one of KERNEL_GRADS.
  """
  width: int = 1
  num_classes: int = 10
  norm: str = "none"
  image_shape: Sequence[int] = (32, 32, 3)
  init_scheme: str = "pytorch"
  kernel_grad: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Logits `(n, num_classes)` of flat images `x` `(n, H*W*C)`."""
    h = _to_images(x, self.image_shape)
    h = _conv(16 * self.width, h.shape[-1], 3, 1, self.norm, self.init_scheme, "Conv_0",
              self.kernel_grad)(h)
    h = nn.relu(_norm(self.norm, "0", train)(h))
    for k in range(9):
      stage, first = k // 3, k % 3 == 0
      stride = 2 if first and stage > 0 else 1
      h = BasicBlock(16 * 2 ** stage * self.width, stride, self.norm, self.init_scheme,
                     self.kernel_grad, name=f"Block_{k}")(h, train)
    h = jnp.mean(h, axis=(-3, -2))
    return _readout(self.num_classes, h.shape[-1], self.init_scheme)(h)


def make_conv_net(arch: str, width: int, num_classes: int, image_shape, norm: str,
                  init: str = "pytorch") -> nn.Module:
  """A VGG (`vgg`: VGG-11's stages for the image size; `vgg_small`: SMALL_VGG_STAGES) or
  ResNet20, after checking its arguments."""
  if arch not in CONV_ARCHS:
    raise LmcError(f"Unknown conv architecture {arch!r}; use one of {', '.join(CONV_ARCHS)}.")
  if int(width) < 1:
    raise LmcError(f"Width multiplier {width} is below 1; pass a width of at least 1.")
  if int(num_classes) < 1:
    raise LmcError(f"num_classes {num_classes} is below 1; pass at least 1.")
  _check_norm(norm)
  initializers(init, 1)  # validates the name
  shape = _check_image_shape(image_shape)
  if arch in ("vgg", "vgg_small"):
    stages = default_vgg_stages(shape) if arch == "vgg" else SMALL_VGG_STAGES
    _check_vgg_fits(stages, shape)
    return VGG(stages=stages, width=int(width), num_classes=int(num_classes), norm=norm,
               image_shape=shape, init_scheme=init)
  if min(shape[:2]) < RESNET20_DOWNSAMPLING:
    raise LmcError(f"A {shape[0]}x{shape[1]} image is too small for ResNet-20, which "
                   f"downsamples by {RESNET20_DOWNSAMPLING}; use images of at least 4x4.")
  return ResNet20(width=int(width), num_classes=int(num_classes), norm=norm, image_shape=shape,
                  init_scheme=init)
