"""The matmul kernel gradient (`nn.conv_grad`) equals JAX's own convolution gradient, and a
conv net using it (or the compiled kernels, `nn.native_conv`) computes the same loss,
gradients and permutation spec."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lmc_jax.nn import random_draws
from lmc_jax.nn.conv import make_conv_net, resolved_kernel_grad
from lmc_jax.nn.conv_grad import conv_general_dilated
from lmc_jax.nn.models import init_variables
from lmc_jax.symmetry.derive import network_spec

DN = ("NHWC", "HWIO", "NHWC")
# (kernel h, w), strides, padding: PyTorch's 3x3 and strided 1x1 convs, and odd shapes.
CASES = [((3, 3), (1, 1), ((1, 1), (1, 1))), ((3, 3), (2, 2), ((1, 1), (1, 1))),
         ((1, 1), (2, 2), ((0, 0), (0, 0))), ((2, 3), (1, 2), ((0, 2), (1, 0)))]


def _loss(conv):
  return lambda x, k, t: jnp.sum(jnp.sin(conv(x, k)) * t)


def _both(kernel, strides, padding, shape=(3, 7, 6, 2), c_out=4):
  keys = jax.random.split(jax.random.key(0), 3)
  x = random_draws.normal(keys[0], shape)
  k = random_draws.normal(keys[1], kernel + (shape[-1], c_out))
  out = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)
  t = random_draws.normal(keys[2], out.shape)
  ours = lambda x, k: conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)
  theirs = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)
  return x, k, t, ours, theirs


@pytest.mark.parametrize("kernel,strides,padding", CASES)
def test_forward_and_gradients_equal_lax(kernel, strides, padding):
  x, k, t, ours, theirs = _both(kernel, strides, padding)
  np.testing.assert_allclose(ours(x, k), theirs(x, k), rtol=1e-6, atol=1e-6)
  g_ours = jax.jit(jax.grad(_loss(ours), (0, 1)))(x, k, t)  # one program each, not op by op
  g_theirs = jax.jit(jax.grad(_loss(theirs), (0, 1)))(x, k, t)
  for a, b in zip(g_ours, g_theirs):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_kernel_gradient_equals_a_plain_loop():
  kernel, strides, padding = CASES[3]
  x, k, t, ours, _ = _both(kernel, strides, padding, shape=(2, 5, 4, 2), c_out=3)
  g = np.asarray(jax.jit(lambda k, t: jax.vjp(lambda k: ours(x, k), k)[1](t)[0])(k, t))
  xp = np.pad(np.asarray(x), ((0, 0), padding[0], padding[1], (0, 0)))
  t = np.asarray(t)
  loop = np.zeros(k.shape)
  for i, j, n, y, z in itertools.product(range(2), range(3), *map(range, t.shape[:3])):
    loop[i, j] += np.outer(xp[n, strides[0] * y + i, strides[1] * z + j], t[n, y, z])
  np.testing.assert_allclose(g, loop, rtol=1e-5, atol=1e-5)


def test_vmapped_over_models_equals_one_model_at_a_time():
  kernel, strides, padding = CASES[1]
  x, k, t, ours, _ = _both(kernel, strides, padding)
  ks = jnp.stack([k, 2 * k, -k])
  grads = jax.jit(jax.vmap(jax.grad(_loss(ours), 1), (None, 0, None)))(x, ks, t)
  one = jax.jit(jax.grad(_loss(ours), 1))
  for m in range(3):
    np.testing.assert_allclose(grads[m], one(x, ks[m], t),
                               rtol=1e-5, atol=1e-5)


def test_other_convolutions_are_lax_s_own():
  x = random_draws.normal(jax.random.key(0), (2, 6, 6, 4))
  k = random_draws.normal(jax.random.key(1), (3, 3, 2, 4))
  kwargs = dict(dimension_numbers=DN, feature_group_count=2)  # grouped: not the plain case
  f = lambda x, k: conv_general_dilated(x, k, (1, 1), "SAME", **kwargs)
  assert "custom_vjp" not in str(jax.make_jaxpr(f)(x, k))
  np.testing.assert_array_equal(f(x, k), lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                                   **kwargs))
  plain = lambda x, k: conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=DN)
  assert "custom_vjp" in str(jax.make_jaxpr(plain)(x, jnp.ones((3, 3, 4, 4))))


def _loss_and_grads(net, tree):
  """A training step's loss and gradients on fixed inputs (6 images of 8x8x3, 5 classes)."""
  x = random_draws.normal(jax.random.key(0), (6, 192))
  y = jnp.arange(6) % 5

  def loss(params):
    logits, _ = net.apply({**tree, "params": params}, x, train=True, mutable=["batch_stats"])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
  return jax.jit(jax.value_and_grad(loss))(tree["params"])


@functools.lru_cache(maxsize=None)
def _with_lax_gradients(arch):
  """The net with JAX's own convolution gradient, its variables, loss and gradients: the
  oracle each other kernel gradient of `arch` is compared with (computed once per arch)."""
  net = make_conv_net(arch, 1, 5, (8, 8, 3), "batchnorm").clone(kernel_grad="lax")
  tree = init_variables(net, jax.random.key(1), 192)
  return net, tree, _loss_and_grads(net, tree)


@pytest.mark.parametrize("arch,kernel_grad", [("resnet20", "matmul"), ("vgg_small", "matmul"),
                                               ("resnet20", "native"), ("vgg_small", "native")])
def test_a_net_with_other_convolution_gradients_trains_the_same(arch, kernel_grad):
  lax_net, tree, (l_lax, g_lax) = _with_lax_gradients(arch)
  mm_net = lax_net.clone(kernel_grad=kernel_grad)
  assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(
      init_variables(mm_net, jax.random.key(1), 192))
  l_mm, g_mm = _loss_and_grads(mm_net, tree)
  np.testing.assert_allclose(l_mm, l_lax, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g_mm), jax.tree_util.tree_leaves(g_lax)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # The permutation spec read off the traced network is the same.
  assert network_spec(mm_net, 192) == network_spec(lax_net, 192)


def test_auto_kernel_gradient_follows_the_backend_and_unknown_names_are_refused(monkeypatch):
  from lmc_jax.errors import LmcError
  from lmc_jax.nn import conv
  assert [resolved_kernel_grad(k) for k in ("lax", "matmul")] == ["lax", "matmul"]
  monkeypatch.setattr(conv.jax, "default_backend", lambda: "gpu")
  assert resolved_kernel_grad("auto") == "lax"
  monkeypatch.setattr(conv.jax, "default_backend", lambda: "cpu")
  # The compiled kernels where they build, else the matmul kernel gradient.
  assert resolved_kernel_grad("auto") == ("native" if conv.native_conv.available() else "matmul")
  with pytest.raises(LmcError, match="Unknown kernel_grad 'fast'"):
    resolved_kernel_grad("fast")
