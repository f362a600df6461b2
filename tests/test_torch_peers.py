"""The bench's PyTorch twins compute the library's networks: same parameter count, same
logits for the same weights (training and evaluation mode), the same augmentation."""
import itertools

import jax
import numpy as np
import pytest

from lmc_jax.analysis import torch_peers
from lmc_jax.config import OptimConfig
from lmc_jax.nn.conv import make_conv_net
from lmc_jax.nn.models import MLP, init_variables, num_params

if torch_peers.available() is not None:
  pytest.skip(torch_peers.available(), allow_module_level=True)
import torch  # noqa: E402

SHAPE = (8, 8, 3)
CASES = [("resnet20", "batchnorm"), ("vgg_small", "batchnorm"), ("vgg_small", "layernorm")]


def _trained_stats(model, tree, x):
  """Variables whose BatchNorm statistics are not the initial zeros and ones, so that the
  copy of running statistics is checked."""
  if "batch_stats" not in tree:
    return tree
  _, new = jax.jit(lambda t, x: model.apply(t, x, train=True, mutable=["batch_stats"]))(tree, x)
  return {**tree, "batch_stats": new["batch_stats"]}


@pytest.mark.parametrize("arch,norm", CASES)
def test_twin_has_the_same_parameters_and_logits(arch, norm):
  model = make_conv_net(arch, 1, 5, SHAPE, norm)
  x = np.random.default_rng(0).normal(size=(6, int(np.prod(SHAPE)))).astype(np.float32)
  tree = _trained_stats(model, init_variables(model, jax.random.key(1), x.shape[1]), x)
  net = torch_peers.peer_network(model)
  assert sum(p.numel() for p in net.parameters()) == num_params(tree["params"])
  torch_peers.copy_variables(model, tree, net)
  images = torch_peers.to_images(x, SHAPE)
  # Jitted: one compilation, not one per operation.
  evaluate = jax.jit(lambda t, x: model.apply(t, x))
  trained = jax.jit(lambda t, x: model.apply(t, x, train=True, mutable=["batch_stats"])[0]) \
      if norm == "batchnorm" else evaluate
  with torch.no_grad():
    net.eval()
    np.testing.assert_allclose(net(images).numpy(), np.asarray(evaluate(tree, x)),
                               rtol=1e-4, atol=1e-4)
    net.train()  # batch statistics
    np.testing.assert_allclose(net(images).numpy(), np.asarray(trained(tree, x)),
                               rtol=1e-4, atol=1e-4)


def test_images_are_the_flat_rows_in_channel_first_order():
  x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, -1)
  images = torch_peers.to_images(x, (4, 5, 3)).numpy()
  for n, c, i, j in itertools.product(range(2), range(3), range(4), range(5)):
    assert images[n, c, i, j] == x[n, (i * 5 + j) * 3 + c]


def test_crop_flip_is_a_padded_crop_flipped_or_not():
  images = torch.randn(16, 2, 6, 5)
  out = torch_peers.crop_flip(torch.Generator().manual_seed(0), images, pad=2).numpy()
  padded = np.pad(images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
  flipped = 0
  for n in range(16):  # brute force: some offset and flip gives the image exactly
    found = [(r, c, f) for r in range(5) for c in range(5) for f in (False, True)
             if np.array_equal(out[n], (lambda a: a[..., ::-1] if f else a)(
                 padded[n, :, r:r + 6, c:c + 5]))]
    assert found, n
    flipped += found[0][2]
  assert 0 < flipped < 16


def test_timings_are_positive_and_refusals_say_why():
  model = make_conv_net("vgg_small", 1, 10, SHAPE, "batchnorm")
  sgd = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9)
  assert torch_peers.unsupported(model, sgd) is None
  assert torch_peers.time_step(model, sgd, 4, steps=2) > 0
  x = np.zeros((10, int(np.prod(SHAPE))), np.float32)
  assert torch_peers.time_epoch(model, sgd, x, np.arange(10) % 10, 4, 2, True) > 0
  assert "rmsprop" in torch_peers.unsupported(model, OptimConfig(optimizer="rmsprop"))
  assert "no PyTorch twin of MLP" in torch_peers.unsupported(MLP(hidden=(4,), d_out=10), sgd)
