"""lmc_jax's compiled CPU convolution (`nn.native_conv`) against lax's convolution and a
plain numpy loop: values, both gradients, strides, paddings, odd channel counts, a zoo under
`vmap`; the cases it leaves to lax; what happens where it cannot be built."""
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lmc_jax.nn import conv, native_conv, random_draws
from lmc_jax.nn.conv import make_conv_net, resolved_kernel_grad

DN = ("NHWC", "HWIO", "NHWC")


def _require_kernels():
  if native_conv.available():
    return
  reason = native_conv.unavailable_reason()
  if reason.startswith(("no C++ compiler", "built and measured for", native_conv.SWITCH_ENV)):
    pytest.skip(reason)
  pytest.fail(f"the compiled convolution did not build: {reason}")


# (input N, H, W, C), kernel (KH, KW), output channels, strides, padding.
CASES = [
    ((3, 8, 8, 16), (3, 3), 16, (1, 1), ((1, 1), (1, 1))),  # a ResNet layer
    ((2, 5, 6, 3), (3, 3), 5, (1, 1), ((1, 1), (1, 1))),  # an RGB stem, 5 outputs
    ((2, 7, 9, 20), (3, 2), 33, (1, 1), ((0, 2), (1, 0))),  # uneven padding, 33 outputs
    ((1, 6, 6, 4), (1, 1), 17, (1, 1), ((0, 0), (0, 0))),  # 1x1
    ((2, 9, 5, 37), (5, 3), 70, (1, 1), ((2, 1), (0, 2))),  # 5x3, 37 -> 70 channels
    ((2, 8, 8, 16), (3, 3), 32, (2, 2), ((1, 1), (1, 1))),  # ResNet's downsampling conv
    ((3, 8, 8, 16), (1, 1), 32, (2, 2), ((0, 0), (0, 0))),  # ResNet's 1x1 shortcut
    ((2, 9, 7, 5), (3, 3), 18, (2, 3), ((1, 2), (0, 1))),  # unequal strides
    ((1, 11, 10, 7), (4, 2), 9, (3, 2), ((3, 0), (2, 1))),  # stride 3, padding wider than 1
    ((2, 4, 4, 64), (3, 3), 80, (1, 1), ((1, 1), (1, 1))),  # several channel blocks
    # 3x3, stride 1, 32+ channels in and out: Winograd F(2x2, 3x3)
    ((3, 7, 5, 36), (3, 3), 40, (1, 1), ((1, 1), (1, 1))),  # odd sizes: partial tiles
    ((2, 9, 6, 33), (3, 3), 50, (1, 1), ((2, 0), (0, 2))),  # uneven padding
    ((2, 6, 6, 64), (3, 3), 48, (1, 1), ((0, 0), (0, 0))),  # no padding
    ((2, 20, 20, 32), (3, 3), 64, (1, 1), ((1, 1), (1, 1))),  # tiles in two chunks
    ((6, 8, 8, 32), (3, 3), 33, (1, 1), ((1, 1), (1, 1))),  # 6 images, a partial vector
]


def _inputs(shape, kernel, c_out, strides, padding, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  x = random_draws.normal(keys[0], shape)
  k = random_draws.normal(keys[1], kernel + (shape[-1], c_out))
  out = jax.eval_shape(_lax(strides, padding), x, k)  # its shape only: nothing compiled
  t = random_draws.normal(keys[2], out.shape)
  return x, k, t


def _ours(strides, padding):
  return lambda x, k: native_conv.conv_general_dilated(x, k, strides, padding,
                                                       dimension_numbers=DN)


def _lax(strides, padding):
  return lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)


def _assert_close(a, b, tol=1e-5):
  """Normwise: the largest difference against the largest magnitude (float32 sums of a few
  hundred terms, added in another order)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape
  assert np.max(np.abs(a - b)) <= tol * max(np.max(np.abs(b)), 1e-30), np.max(np.abs(a - b))


def _loss(f):
  # Linear in the output, so that the gradients depend on t alone, not on the forward pass's
  # rounding.
  return lambda x, k, t: jnp.sum(f(x, k) * t)


@pytest.mark.parametrize("shape,kernel,c_out,strides,padding", CASES)
def test_forward_and_both_gradients_equal_lax(shape, kernel, c_out, strides, padding):
  _require_kernels()
  x, k, t = _inputs(shape, kernel, c_out, strides, padding)
  assert native_conv.handles(x, k, strides, padding, dimension_numbers=DN)
  ours, theirs = _ours(strides, padding), _lax(strides, padding)
  _assert_close(jax.jit(ours)(x, k), theirs(x, k))
  g_ours = jax.jit(jax.grad(_loss(ours), (0, 1)))(x, k, t)
  g_theirs = jax.jit(jax.grad(_loss(theirs), (0, 1)))(x, k, t)  # one program, not op by op
  for a, b in zip(g_ours, g_theirs):
    _assert_close(a, b)


@pytest.mark.parametrize("case", [8, 10])  # stride 3; Winograd's odd sizes
def test_forward_and_kernel_gradient_equal_a_plain_loop(case):
  _require_kernels()
  shape, kernel, c_out, strides, padding = CASES[case]
  x, k, t = _inputs(shape, kernel, c_out, strides, padding, seed=3)
  y, vjp = jax.vjp(_ours(strides, padding), x, k)
  dk = np.asarray(vjp(t)[1])
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), padding[0], padding[1], (0, 0)))
  kk, tt = np.asarray(k, np.float64), np.asarray(t, np.float64)
  loop_y = np.zeros(y.shape)
  loop_dk = np.zeros(k.shape)
  for n, a, b in itertools.product(*map(range, y.shape[:3])):
    for i, j in itertools.product(range(kernel[0]), range(kernel[1])):
      pixel = xp[n, strides[0] * a + i, strides[1] * b + j]
      loop_y[n, a, b] += pixel @ kk[i, j]
      loop_dk[i, j] += np.outer(pixel, tt[n, a, b])
  _assert_close(y, loop_y)
  _assert_close(dk, loop_dk)


@pytest.mark.parametrize("strides,c_in,c_out", [((1, 1), 16, 24), ((2, 2), 16, 24),
                                                ((1, 1), 32, 40)])  # the last: Winograd
def test_a_zoo_under_vmap_equals_one_model_at_a_time(strides, c_in, c_out):
  _require_kernels()
  padding = ((1, 1), (1, 1))
  keys = jax.random.split(jax.random.key(1), 3)
  xs = random_draws.normal(keys[0], (3, 4, 8, 8, c_in))
  ks = random_draws.normal(keys[1], (3, 3, 3, c_in, c_out))
  ts = random_draws.normal(keys[2], (3, 4, 8 // strides[0], 8 // strides[1], c_out))
  grad = jax.grad(_loss(_ours(strides, padding)), (0, 1))
  zoo = jax.jit(jax.vmap(grad))(xs, ks, ts)
  xs, ks, ts, zoo = jax.tree_util.tree_map(np.asarray, (xs, ks, ts, zoo))  # sliced by numpy
  one_model = jax.jit(jax.grad(_loss(_lax(strides, padding)), (0, 1)))
  for m in range(3):
    one = one_model(xs[m], ks[m], ts[m])
    for a, b in zip(zoo, one):
      _assert_close(a[m], b)


def test_cases_it_does_not_take_go_to_lax_and_stay_right():
  x = random_draws.normal(jax.random.key(0), (2, 6, 6, 4))
  k = random_draws.normal(jax.random.key(1), (3, 3, 4, 5))
  pads = ((1, 1), (1, 1))
  refused = [
      dict(lhs=x.astype(jnp.bfloat16), rhs=k.astype(jnp.bfloat16), padding=pads),
      dict(lhs=x, rhs=k, padding="SAME"),
      dict(lhs=x, rhs=k, padding=pads, rhs_dilation=(2, 2)),
      dict(lhs=x, rhs=k, padding=((3, 1), (1, 1))),  # wider than the kernel allows
      dict(lhs=x, rhs=k[:, :, :2, :4], padding=pads, feature_group_count=2),
  ]
  for case in refused:
    args = dict(window_strides=(1, 1), dimension_numbers=DN, **case)
    assert not native_conv.handles(**{a: v for a, v in args.items()})
    got = native_conv.conv_general_dilated(**args)
    want = lax.conv_general_dilated(**args)
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=2e-2, atol=2e-2)


def test_without_the_kernels_nets_fall_back_to_the_matmul_kernel_gradient(monkeypatch):
  monkeypatch.setattr(native_conv, "_state", {"ok": False, "reason": "no C++ compiler found"})
  assert not native_conv.available()
  assert native_conv.unavailable_reason() == "no C++ compiler found"
  assert resolved_kernel_grad("native") == "matmul"
  monkeypatch.setattr(conv.jax, "default_backend", lambda: "cpu")
  assert resolved_kernel_grad("auto") == "matmul"
  x = random_draws.normal(jax.random.key(0), (2, 6, 6, 3))
  k = random_draws.normal(jax.random.key(1), (3, 3, 3, 4))
  got = native_conv.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)
  np.testing.assert_allclose(got, _lax((1, 1), ((1, 1), (1, 1)))(x, k), rtol=1e-5, atol=1e-5)


def test_a_failed_build_says_why_and_leaves_no_file(tmp_path):
  target = tmp_path / "lib.so"
  with pytest.raises(RuntimeError, match="failed"):
    native_conv._build("/bin/false", target)
  assert list(tmp_path.iterdir()) == []


def test_the_library_is_named_by_source_compiler_and_cpu(monkeypatch, tmp_path):
  monkeypatch.setenv(native_conv.CACHE_ENV, str(tmp_path))
  a = native_conv.library_path("/usr/bin/g++")
  assert a.parent == tmp_path and a == native_conv.library_path("/usr/bin/g++")
  assert native_conv.library_path("/usr/bin/clang++") != a
  monkeypatch.setattr(native_conv, "_cpu_flags", lambda: "flags: sse2")
  assert native_conv.library_path("/usr/bin/g++") != a


def test_the_switch_turns_the_kernels_off(monkeypatch):
  monkeypatch.setattr(native_conv, "_state", {})
  monkeypatch.setenv(native_conv.SWITCH_ENV, "0")
  assert not native_conv.available()
  assert native_conv.SWITCH_ENV in native_conv.unavailable_reason()


@pytest.mark.parametrize("arch", ["resnet20", "vgg_small"])
def test_a_net_on_the_compiled_kernels_counts_the_same_flops(arch):
  _require_kernels()
  from lmc_jax.analysis.benchmarks import forward_flops
  net = make_conv_net(arch, 1, 5, (8, 8, 3), "none")
  variables = net.init(jax.random.key(0), jnp.ones((2, 192)))
  flops = [forward_flops(net.clone(kernel_grad=kg), variables, 192) for kg in ("native", "lax")]
  assert flops[0] == flops[1] > 0


def test_the_kernels_are_compiled_once_per_machine():
  _require_kernels()
  path = native_conv._state["library"]
  assert path.exists() and path.parent == native_conv._cache_dir()
  assert os.path.basename(path).startswith("native_conv-")


@pytest.mark.parametrize("c_in,c_out", [(8, 16), (32, 40)])  # direct; Winograd
def test_the_kernel_gradient_is_the_same_on_every_call(c_in, c_out):
  # Each model's images are summed in fixed chunks, whichever thread takes which.
  _require_kernels()
  x, k, t = _inputs((64, 6, 6, c_in), (3, 3), c_out, (1, 1), ((1, 1), (1, 1)))
  grad = jax.jit(jax.grad(_loss(_ours((1, 1), ((1, 1), (1, 1)))), 1))
  first = np.asarray(grad(x, k, t))
  for _ in range(5):
    np.testing.assert_array_equal(np.asarray(grad(x, k, t)), first)


def test_the_bench_says_which_convolutions_ran(monkeypatch):
  from lmc_jax.nn.conv import convolution_note
  monkeypatch.setattr(conv.jax, "default_backend", lambda: "cpu")
  monkeypatch.setattr(native_conv, "_state", {"ok": True, "reason": ""})
  assert "compiled CPU kernels" in convolution_note()
  monkeypatch.setattr(native_conv, "_state", {"ok": False, "reason": "no C++ compiler found"})
  note = convolution_note()
  assert "kernel_grad='matmul'" in note and "no C++ compiler found" in note
