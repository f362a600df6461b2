"""lmc_jax's own CPU convolution (`native_conv.cc`), compiled on first use and called from
`jax.jit` through XLA's FFI.

XLA's CPU convolutions run 1.3-4x slower than oneDNN's (PyTorch's) on the shapes of a
CIFAR conv net, most of all the kernel gradient (BUILD_NOTES.md). `conv_general_dilated`
here is a drop-in for `jax.lax.conv_general_dilated` that sends the common case to two
compiled kernels: the forward convolution (also used, on the flipped kernel, for the input
gradient) and the kernel gradient. Under `vmap` (a zoo) one call covers every model.
Both are direct convolutions, except for 3x3 stride-1 layers with 32 or more channels in
and out (most of a CIFAR ResNet's or VGG's) on an AVX-512 CPU, where both run Winograd's
F(2x2, 3x3) (16 multiplications per 2x2 block of outputs and channel pair where the direct
way has 36; its kernel gradient F(3x3, 2x2)): equal to the direct way to float32 rounding
(relative error about 5e-7 against lax at highest precision; tested).

The common case: float32, NHWC input, HWIO kernel, explicit padding, no dilation, no groups
(stride 1 with padding between 0 and kernel size - 1 on each side; any padding for larger
strides, whose input gradient, a transposed convolution, stays XLA's). Anything else
(bf16, 'SAME' strings, dilations) goes to `conv_grad.conv_general_dilated`, so every
convolution stays right.

Compilation: the first call runs the C++ compiler (`$CXX`, else `c++`/`g++`, about 10-20 s)
with `-O3 -march=native` and keeps the library in `$LMC_JAX_NATIVE_CACHE` (default
`~/.cache/lmc_jax/native`), named by a hash of the source, the jaxlib version, the compiler
and this CPU's flags, so a later process loads it at once. Where no compiler works,
`available()` is False, `unavailable_reason()` says why, and `kernel_grad='auto'` uses the
pure-JAX path. `LMC_JAX_NATIVE_CONV=0` turns the compiled path off.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lmc_jax.nn import conv_grad

SOURCE = Path(__file__).with_name("native_conv.cc")
CACHE_ENV = "LMC_JAX_NATIVE_CACHE"
SWITCH_ENV = "LMC_JAX_NATIVE_CONV"
FORWARD_TARGET = "lmc_conv_forward"
KERNEL_GRAD_TARGET = "lmc_conv_kernel_grad"
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")

_lock = threading.Lock()
_state: dict = {}  # "ok": bool, "reason": str, "library": Path


def _compiler() -> Optional[str]:
  for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
    if name and shutil.which(name):
      return shutil.which(name)
  return None


def _cpu_flags() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith(("flags", "Features")):
        return line
  except OSError:
    pass
  return platform.processor()


def _cache_dir() -> Path:
  return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lmc_jax" / "native")


def library_path(compiler: str) -> Path:
  """Where the library compiled from this source, jaxlib, compiler and CPU lives."""
  import jaxlib
  key = hashlib.sha256("\0".join([
      SOURCE.read_text(), jaxlib.__version__, compiler, " ".join(FLAGS), _cpu_flags(),
      platform.machine()]).encode()).hexdigest()[:20]
  return _cache_dir() / f"native_conv-{key}.so"


def _build(compiler: str, target: Path) -> None:
  """Compiles SOURCE into `target` (written under a temporary name, then renamed, so that
  processes compiling at the same time never load half a file)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(fd)
  try:
    cmd = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def _load() -> bool:
  """Compiles (once per machine) and registers the kernels; False with a reason if not."""
  with _lock:
    if "ok" in _state:
      return _state["ok"]
    _state["ok"], _state["reason"] = False, ""
    if os.environ.get(SWITCH_ENV, "1") == "0":
      _state["reason"] = f"{SWITCH_ENV}=0 turns it off"
      return False
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
      _state["reason"] = f"built and measured for x86-64 Linux only, not {platform.platform()}"
      return False
    compiler = _compiler()
    if compiler is None:
      _state["reason"] = "no C++ compiler found (set $CXX or install g++)"
      return False
    try:
      import ctypes
      path = library_path(compiler)
      if not path.exists():
        _build(compiler, path)
      lib = ctypes.cdll.LoadLibrary(str(path))
      jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(lib.LmcConvForward),
                                  platform="cpu")
      jax.ffi.register_ffi_target(KERNEL_GRAD_TARGET,
                                  jax.ffi.pycapsule(lib.LmcConvKernelGrad), platform="cpu")
    except Exception as e:  # noqa: BLE001 - any failure means: use the pure-JAX path
      _state["reason"] = f"compiling or loading {SOURCE.name} failed: {e}"
      return False
    _state["ok"], _state["library"] = True, path
    return True


def available() -> bool:
  """Whether the compiled kernels can be used in this process (compiles them on first call)."""
  return _load()


def unavailable_reason() -> str:
  """Why `available()` is False ('' when it is True)."""
  _load()
  return _state.get("reason", "")


Padding = Tuple[Tuple[int, int], Tuple[int, int]]
Strides = Tuple[int, int]


def _attrs(strides: Strides, padding: Padding) -> dict:
  (pt, pb), (pl, pr) = padding
  return dict(stride_h=np.int64(strides[0]), stride_w=np.int64(strides[1]),
              pad_top=np.int64(pt), pad_bottom=np.int64(pb), pad_left=np.int64(pl),
              pad_right=np.int64(pr))


def _out_size(size: int, kernel: int, stride: int, pads: Tuple[int, int]) -> int:
  return (size + pads[0] + pads[1] - kernel) // stride + 1


def _forward(x, k, strides: Strides, padding: Padding):
  """`(..., N, OH, OW, O)` for x `(..., N, H, W, C)` and k `(..., KH, KW, C, O)`."""
  oh = _out_size(x.shape[-3], k.shape[-4], strides[0], padding[0])
  ow = _out_size(x.shape[-2], k.shape[-3], strides[1], padding[1])
  out = jax.ShapeDtypeStruct(x.shape[:-3] + (oh, ow, k.shape[-1]), x.dtype)
  return jax.ffi.ffi_call(FORWARD_TARGET, out, vmap_method="broadcast_all")(
      x, k, **_attrs(strides, padding))


def _kernel_grad(x, g, kernel_shape, strides: Strides, padding: Padding):
  """`(..., KH, KW, C, O)`: the kernel gradient for output gradient g `(..., N, OH, OW, O)`."""
  out = jax.ShapeDtypeStruct(x.shape[:-4] + tuple(kernel_shape), x.dtype)
  return jax.ffi.ffi_call(KERNEL_GRAD_TARGET, out, vmap_method="broadcast_all")(
      x, g, **_attrs(strides, padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, k, strides: Strides, padding: Padding):
  return _forward(x, k, strides, padding)


def _conv_fwd(x, k, strides, padding):
  return _forward(x, k, strides, padding), (x, k)


def _conv_bwd(strides, padding, residuals, g):
  x, k = residuals
  kh, kw = k.shape[-4], k.shape[-3]
  (pt, pb), (pl, pr) = padding
  if strides == (1, 1):
    # The input gradient is the forward convolution of g with the kernel flipped in space
    # and its channel axes swapped, padded by what the forward padding left of the window.
    flipped = jnp.swapaxes(jnp.flip(k, axis=(-4, -3)), -1, -2)
    dx = _forward(g, flipped, (1, 1), ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)))
  else:  # a transposed (input-dilated) convolution: XLA's
    _, input_vjp = jax.vjp(lambda x: reference(x, k, strides, padding), x)
    (dx,) = input_vjp(g)
  return dx, _kernel_grad(x, g, k.shape[-4:], strides, padding)


_conv.defvjp(_conv_fwd, _conv_bwd)


def handles(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
            dimension_numbers=None, feature_group_count=1, batch_group_count=1,
            preferred_element_type=None) -> bool:
  """Whether the compiled kernels take this convolution (see the module docstring)."""
  if not conv_grad._plain(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                          feature_group_count, batch_group_count, preferred_element_type):
    return False
  if lhs.dtype != jnp.float32 or any(int(s) < 1 for s in window_strides):
    return False
  if tuple(int(s) for s in window_strides) != (1, 1):
    return all(int(p) >= 0 for side in padding for p in side)
  kh, kw = rhs.shape[0], rhs.shape[1]
  return (all(0 <= int(p) <= kh - 1 for p in padding[0])
          and all(0 <= int(p) <= kw - 1 for p in padding[1]))


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, by the compiled kernels where they apply and are
  available, by `conv_grad.conv_general_dilated` otherwise. Same arguments, same result."""
  if available() and handles(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                             dimension_numbers, feature_group_count, batch_group_count,
                             preferred_element_type):
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    return _conv(lhs, rhs, tuple(int(s) for s in window_strides), pads)
  return conv_grad.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type)


def calls_forward(name: str, params) -> bool:
  """Whether a jaxpr equation (primitive `name`, `params`) calls the compiled forward
  convolution, with or without model axes."""
  return name == "ffi_call" and params.get("target_name") == FORWARD_TARGET


def conv_equivalent(name: str, params, ranks: Sequence[int]) -> Optional[dict]:
  """For a jaxpr equation that calls the compiled forward convolution (primitive `name`,
  `params`, operand ranks `ranks`): the params of the `conv_general_dilated` equation with
  the same meaning, so that code reading jaxprs (derive_spec and the sign and orthogonal
  analyses through it) treats both alike (FLOP counts ask `calls_forward`). None for any
  other equation, and for a call with model axes (under `vmap`, where no single
  `conv_general_dilated` means the same)."""
  if not calls_forward(name, params) or tuple(ranks[:2]) != (4, 4):
    return None
  a = dict(params["attributes"])
  return dict(
      window_strides=(int(a["stride_h"]), int(a["stride_w"])),
      padding=((int(a["pad_top"]), int(a["pad_bottom"])),
               (int(a["pad_left"]), int(a["pad_right"]))),
      lhs_dilation=(1, 1), rhs_dilation=(1, 1),
      dimension_numbers=lax.conv_dimension_numbers((1,) * 4, (1,) * 4,
                                                   conv_grad.PLAIN_DIMENSIONS),
      feature_group_count=1, batch_group_count=1, precision=None,
      preferred_element_type=None)


def reference(x, k, strides: Strides, padding: Padding):
  """lax's convolution with the same meaning (for the strided input gradient, tests and
  benchmarks)."""
  return lax.conv_general_dilated(x, k, strides, padding,
                                  dimension_numbers=conv_grad.PLAIN_DIMENSIONS)
