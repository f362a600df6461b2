"""The library's conv nets written in PyTorch, to time the peer framework on the same machine.

Imported only where `torch` is importable (`available()` says whether; the bench prints the
reason when not). `peer_network(model)` builds the torch twin of an `nn.conv.VGG` or
`nn.conv.ResNet20` (same layers, channels, strides, padding, norms and readout),
`copy_variables` loads one model's Flax variables into it, so that both compute the same
function, and `time_step` / `time_epoch` measure what a PyTorch user's training runs at:
images `(n, C, H, W)` contiguous, one optimizer step per batch, and for an epoch a fresh
shuffle, the same crop-and-flip augmentation (pad 4 with zeros, random crop, random
horizontal flip) and the mean batch loss, for each model of a zoo one after another.
"""
from __future__ import annotations

import importlib.util
import time
from typing import Optional

import numpy as np

from lmc_jax.config import OptimConfig
from lmc_jax.nn.conv import VGG, ResNet20, default_vgg_stages

PEER_OPTIMIZERS = ("adamw", "sgd")


def available() -> Optional[str]:
  """None where torch is importable, else the reason (with the fix) it is not."""
  if importlib.util.find_spec("torch") is None:
    return "torch is not installed (pip install -e '.[bench]' adds the CPU wheel)"
  return None


def unsupported(model, optim: OptimConfig) -> Optional[str]:
  """None where a peer exists for `model` trained with `optim`, else why not."""
  if not isinstance(model, (VGG, ResNet20)):
    return f"no PyTorch twin of {type(model).__name__} (only the library's VGG and ResNet20)"
  if optim.optimizer not in PEER_OPTIMIZERS:
    return f"no PyTorch twin of the {optim.optimizer} optimizer (only {PEER_OPTIMIZERS})"
  return None


def _torch():
  import torch
  return torch


def _layers():
  """The torch module classes, defined on first use so that importing this file needs no
  torch."""
  torch = _torch()
  tnn = torch.nn

  class ChannelLayerNorm(tnn.Module):
    """LayerNorm over the channel axis of each pixel of `(n, C, H, W)` (Flax's eps)."""

    def __init__(self, c: int, eps: float = 1e-6):
      super().__init__()
      self.norm = tnn.LayerNorm(c, eps=eps)

    def forward(self, h):
      return self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

  def norm_layer(norm: str, c: int):
    if norm == "none":
      return tnn.Identity()
    if norm == "layernorm":
      return ChannelLayerNorm(c)
    return tnn.BatchNorm2d(c, eps=1e-5, momentum=0.1)

  def conv(c_in, c_out, size, stride, norm):
    return tnn.Conv2d(c_in, c_out, size, stride, size // 2, bias=norm == "none")

  class TorchVGG(tnn.Module):
    def __init__(self, stages, width, num_classes, norm, c_in):
      super().__init__()
      self.convs, self.norms, self.plan = tnn.ModuleList(), tnn.ModuleList(), []
      for s in stages:
        if s == "M":
          self.plan.append("M")
          continue
        self.convs.append(conv(c_in, int(s) * width, 3, 1, norm))
        self.norms.append(norm_layer(norm, int(s) * width))
        self.plan.append("C")
        c_in = int(s) * width
      self.readout = tnn.Linear(c_in, num_classes)

    def forward(self, h):
      i = 0
      for p in self.plan:
        if p == "M":
          h = torch.nn.functional.max_pool2d(h, 2, 2)
        else:
          h = torch.relu(self.norms[i](self.convs[i](h)))
          i += 1
      return self.readout(h.mean(dim=(2, 3)))

  class Block(tnn.Module):
    def __init__(self, c_in, features, stride, norm):
      super().__init__()
      self.conv0, self.norm0 = conv(c_in, features, 3, stride, norm), norm_layer(norm, features)
      self.conv1, self.norm1 = conv(features, features, 3, 1, norm), norm_layer(norm, features)
      self.project = stride != 1 or c_in != features
      if self.project:
        self.conv_s = conv(c_in, features, 1, stride, norm)
        self.norm_s = norm_layer(norm, features)

    def forward(self, x):
      h = torch.relu(self.norm0(self.conv0(x)))
      h = self.norm1(self.conv1(h))
      return torch.relu(h + (self.norm_s(self.conv_s(x)) if self.project else x))

  class TorchResNet20(tnn.Module):
    def __init__(self, width, num_classes, norm, c_in):
      super().__init__()
      c = 16 * width
      self.conv0, self.norm0 = conv(c_in, c, 3, 1, norm), norm_layer(norm, c)
      blocks = []
      for k in range(9):
        stage, first = k // 3, k % 3 == 0
        features = 16 * 2 ** stage * width
        blocks.append(Block(c, features, 2 if first and stage > 0 else 1, norm))
        c = features
      self.blocks = tnn.ModuleList(blocks)
      self.readout = tnn.Linear(c, num_classes)

    def forward(self, h):
      h = torch.relu(self.norm0(self.conv0(h)))
      for b in self.blocks:
        h = b(h)
      return self.readout(h.mean(dim=(2, 3)))

  return TorchVGG, TorchResNet20


def peer_network(model):
  """The torch twin of the Flax `model` (a VGG or ResNet20), freshly initialised; it takes
  images `(n, C, H, W)` and returns logits `(n, num_classes)`."""
  torch_vgg, torch_resnet = _layers()
  c_in = int(model.image_shape[2])
  if isinstance(model, VGG):
    stages = model.stages if model.stages is not None else default_vgg_stages(model.image_shape)
    return torch_vgg(stages, model.width, model.num_classes, model.norm, c_in)
  return torch_resnet(model.width, model.num_classes, model.norm, c_in)


def _flax_layers(model, tree: dict):
  """(params, stats) dicts of one model's variables, keyed by the torch twin's module path
  (`convs.0`, `blocks.3.conv_s`, ...), in the twin's order."""
  params, stats = tree["params"], tree.get("batch_stats", {})
  norm = {"batchnorm": "BatchNorm", "layernorm": "LayerNorm"}.get(model.norm)
  out = []

  def pair(torch_conv, torch_norm, scope_p, scope_s, k):
    out.append((torch_conv, "conv", scope_p[f"Conv_{k}"], None))
    if norm:
      out.append((torch_norm, norm, scope_p[f"{norm}_{k}"], scope_s.get(f"{norm}_{k}")))

  if isinstance(model, VGG):
    convs = sum(1 for s in (model.stages or default_vgg_stages(model.image_shape)) if s != "M")
    for i in range(convs):
      pair(f"convs.{i}", f"norms.{i}", params, stats, i)
  else:
    pair("conv0", "norm0", params, stats, 0)
    for k in range(9):
      p, s = params[f"Block_{k}"], stats.get(f"Block_{k}", {})
      pair(f"blocks.{k}.conv0", f"blocks.{k}.norm0", p, s, 0)
      pair(f"blocks.{k}.conv1", f"blocks.{k}.norm1", p, s, 1)
      if "Conv_shortcut" in p:
        pair(f"blocks.{k}.conv_s", f"blocks.{k}.norm_s", p, s, "shortcut")
  out.append(("readout", "dense", params["Dense_0"], None))
  return out


def copy_variables(model, tree: dict, net) -> None:
  """Loads one model's Flax variables `tree` ({"params": ..., "batch_stats": ...}) into its
  torch twin `net`: conv kernels (kh, kw, in, out) -> (out, in, kh, kw), Dense (in, out)
  -> (out, in), norm scale/bias -> weight/bias, BatchNorm mean/var -> running stats."""
  torch = _torch()
  modules = dict(net.named_modules())
  as_t = lambda a: torch.from_numpy(np.array(a, np.float32))
  with torch.no_grad():
    for path, kind, p, s in _flax_layers(model, tree):
      m = modules[path]
      if kind == "conv":
        m.weight.copy_(as_t(p["kernel"]).permute(3, 2, 0, 1))
      elif kind == "dense":
        m.weight.copy_(as_t(p["kernel"]).T)
      else:
        target = m.norm if kind == "LayerNorm" else m
        target.weight.copy_(as_t(p["scale"]))
      if "bias" in p:
        (m.norm if kind == "LayerNorm" else m).bias.copy_(as_t(p["bias"]))
      if kind == "BatchNorm":
        m.running_mean.copy_(as_t(s["mean"]))
        m.running_var.copy_(as_t(s["var"]))


def to_images(x_flat: np.ndarray, image_shape):
  """Flat rows `(n, H*W*C)` (HWC order) -> a contiguous torch tensor `(n, C, H, W)`."""
  torch = _torch()
  h, w, c = image_shape
  return torch.from_numpy(np.ascontiguousarray(
      np.asarray(x_flat, np.float32).reshape(-1, h, w, c).transpose(0, 3, 1, 2)))


def make_optimizer(net, optim: OptimConfig):
  """torch's AdamW (betas 0.9, 0.999; eps 1e-8) or SGD (momentum, L2 weight decay) at the
  config's `lr` (held constant: a schedule costs nothing measurable per step)."""
  torch = _torch()
  if optim.optimizer == "adamw":
    return torch.optim.AdamW(net.parameters(), lr=optim.lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=optim.weight_decay)
  return torch.optim.SGD(net.parameters(), lr=optim.lr, momentum=optim.momentum,
                         weight_decay=optim.weight_decay)


def crop_flip(generator, images, pad: int = 4):
  """Pad `(n, C, H, W)` by `pad` zeros, crop back at random offsets, flip half left-right
  (the transform of `data.augment.augment_batch`, drawn from torch's generator)."""
  torch = _torch()
  n, _, h, w = images.shape
  padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
  off = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
  flip = torch.rand(n, generator=generator) < 0.5
  cols = off[:, 1, None] + torch.arange(w)
  cols = torch.where(flip[:, None], cols.flip(1), cols)
  rows = off[:, 0, None] + torch.arange(h)
  return padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]] \
      .permute(0, 3, 1, 2).contiguous()


def _step(net, opt, xb, yb):
  torch = _torch()
  opt.zero_grad(set_to_none=True)
  loss = torch.nn.functional.cross_entropy(net(xb), yb)
  loss.backward()
  opt.step()
  return loss.detach()


def time_step(model, optim: OptimConfig, batch: int, steps: int = 5, seed: int = 0) -> float:
  """Median seconds of one training step of the torch twin on a fixed batch of `batch`
  random images (after one warm-up step)."""
  torch = _torch()
  torch.manual_seed(seed)
  net = peer_network(model).train()
  opt = make_optimizer(net, optim)
  h, w, c = model.image_shape
  xb = torch.randn(batch, c, h, w)
  yb = torch.randint(0, model.num_classes, (batch,))
  _step(net, opt, xb, yb)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    _step(net, opt, xb, yb).item()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def time_epoch(model, optim: OptimConfig, x_flat, y, batch: int, num_models: int,
               augment: bool, seed: int = 0) -> float:
  """Seconds for one epoch of each of `num_models` torch twins over `(x_flat, y)`, one model
  after another: shuffle, (augment,) step per batch of `batch` (the last one partial),
  the mean batch loss read once at the end. Each model's first batch (warm-up) is not
  timed."""
  torch = _torch()
  torch.manual_seed(seed)
  images = to_images(x_flat, model.image_shape)
  labels = torch.from_numpy(np.asarray(y, np.int64))
  gen = torch.Generator().manual_seed(seed)
  total = 0.0
  for _ in range(num_models):
    net = peer_network(model).train()
    opt = make_optimizer(net, optim)
    _step(net, opt, images[:batch], labels[:batch])
    t = time.perf_counter()
    order = torch.randperm(len(labels), generator=gen)
    losses = []
    for s in range(0, len(labels), batch):
      idx = order[s:s + batch]
      xb = images[idx]
      if augment:
        xb = crop_flip(gen, xb)
      losses.append(_step(net, opt, xb, labels[idx]))
    torch.stack(losses).mean().item()
    total += time.perf_counter() - t
  return total
