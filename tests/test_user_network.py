"""A network and a dataset lmc_jax has never seen, defined here and nowhere else, go through
the zoo and barrier commands with every alignment method and REPAIR, as a user runs them:
`--arch=tests.test_user_network:ResidualNet --dataset=npz:PATH`.

What is checked against an independent answer: the derived spec leaves the module's
function unchanged; every method's permutations are permutations that leave both ends of
every line where they were; no method beats exact search's epsilon on the pairs with the
reference, which exact search enumerates; the zoo's network is the module itself."""
import flax.linen as nn
import jax
import numpy as np
import pytest

import lmc_jax
from tests.helpers.cli import run_cli

ARCH = f"{__name__}:ResidualNet"
CONV = f"{__name__}:small_convnet"
METHODS = ("weight", "activation", "ste", "sinkhorn", "mergemany", "exact")


class ResidualNet(nn.Module):
  """A residual stream of `width` units with a LayerNorm-GELU branch, BatchNorm and a
  readout: nothing the built-in networks are."""
  width: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Dense(self.width)(x)
    h = h + nn.Dense(self.width)(nn.gelu(nn.LayerNorm()(h)))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(self.num_classes)(nn.gelu(h))


class SmallConv(nn.Module):
  width: int
  num_classes: int
  image_shape: tuple

  @nn.compact
  def __call__(self, x):
    x = x.reshape((-1,) + tuple(self.image_shape))
    x = nn.relu(nn.Conv(4 * self.width, (3, 3))(x))
    x = nn.relu(nn.GroupNorm(num_groups=2)(nn.Conv(4 * self.width, (3, 3), strides=2)(x)))
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


def small_convnet(width, num_classes, image_shape):
  """A factory (not a class) that asks for the images' shape."""
  return SmallConv(width, num_classes, tuple(image_shape))


def _blobs(rng, centres, n):
  """`n` points around `centres` `(classes, d)`: inputs `(n, d)` and their classes."""
  y = rng.integers(0, len(centres), n)
  return (centres[y] + rng.normal(size=(n, centres.shape[1]))).astype(np.float32), y


@pytest.fixture(scope="module")
def flat_npz(tmp_path_factory):
  path = tmp_path_factory.mktemp("data") / "blobs.npz"
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 6)) * 2.0
  (x_tr, y_tr), (x_te, y_te) = _blobs(rng, centres, 300), _blobs(rng, centres, 120)
  np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
  return path


def _ok(*args):
  r = run_cli(*args)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def test_a_users_module_and_data_go_through_zoo_barrier_every_method_and_repair(flat_npz,
                                                                                tmp_path):
  out = tmp_path / "runs"
  _ok("zoo", f"--dataset=npz:{flat_npz}", f"--arch={ARCH}", "--width=5", "--num_models=3",
      "--epochs=4", f"--out={out}")
  d = out / "npz_blobs_ResidualNet_w5"
  r = _ok("barrier", f"--zoo={d}", f"--align={','.join(METHODS)}", "--repair", "--diagnostics",
          "--ste_steps=4", "--sinkhorn_steps=4", "--bn_reset_batches=2")
  assert "ResidualNet" in r.stdout  # the family is named after the module

  zoo = lmc_jax.open_zoo(d)
  assert isinstance(zoo.model, ResidualNet) and zoo.config.model.arch == ARCH
  assert "batch_stats" in zoo.variables and zoo.info.num_classes == 3
  data = zoo.dataset()
  x = data.x_test[:9]
  one = zoo.member(0)
  assert lmc_jax.check_spec(zoo.model, one, zoo.spec, x) < 1e-4  # the spec keeps the function

  result = lmc_jax.read_barrier_json(d, zoo.num_models)
  assert result.method_names[:len(METHODS)] == METHODS and result.bn_reset is not None
  naive = result.curves("naive")
  ref = naive.involving(result.reference)
  best = result.curves("exact").epsilon[ref]
  for name in METHODS:
    entry = result.method(name)
    assert entry.skipped is None, (name, entry.skipped)
    for perm in entry.perms:
      assert all(sorted(v.tolist()) == list(range(len(v))) for v in perm.values()), name
    # Permuting a model leaves its function alone: the ends of every line are unchanged.
    np.testing.assert_allclose(entry.curves.loss[:, [0, -1]], naive.loss[:, [0, -1]],
                               rtol=1e-4, atol=1e-5, err_msg=name)
    assert (entry.curves.epsilon[ref] >= best - 1e-6).all(), name  # exact search is optimal
    assert entry.repaired is not None and entry.repaired.curves is not None, name
  assert result.naive_repaired.curves is not None and result.diagnostics is not None


def test_a_users_conv_factory_on_image_data_trains_aligns_and_repairs(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(96, 8, 8, 3), dtype=np.uint8)
  labels = (images[..., 0].mean((1, 2)) > images[..., 2].mean((1, 2))).astype(np.int64)
  path = tmp_path / "tiles.npz"
  np.savez(path, x_train=images[:64], y_train=labels[:64], x_test=images[64:],
           y_test=labels[64:])
  out = tmp_path / "runs"
  _ok("zoo", f"--dataset=npz:{path}", f"--arch={CONV}", "--width=1", "--num_models=2",
      "--epochs=1", f"--out={out}")
  d = out / "npz_tiles_small_convnet_w1"
  _ok("barrier", f"--zoo={d}", "--align=weight,activation", "--repair")
  zoo = lmc_jax.open_zoo(d)
  assert isinstance(zoo.model, SmallConv) and zoo.model.image_shape == (8, 8, 3)
  result = lmc_jax.read_barrier_json(d, 2)
  for name in ("weight", "activation"):
    entry = result.method(name)
    np.testing.assert_allclose(entry.curves.loss[:, [0, -1]],
                               result.curves("naive").loss[:, [0, -1]], rtol=1e-4, atol=1e-5)
    assert entry.repaired.curves is not None
  # The images reach the module as flat rows in HWC order, as the built-in nets get them.
  flat = zoo.dataset().x_train[:1]
  want = zoo.model.apply(zoo.member(0), flat)
  got = SmallConv(1, 2, (8, 8, 3)).apply(zoo.member(0), jax.numpy.asarray(flat))
  np.testing.assert_allclose(got, want)


def test_a_module_that_cannot_be_built_is_refused_by_its_flag(tmp_path, flat_npz):
  for arch, words in ((f"{__name__}:NoSuchNet", "has no callable NoSuchNet"),
                      ("no_such_package.nets:Net", "no_such_package.nets cannot be imported"),
                      (f"{__name__}:_blobs", "failed when called with width=4")):
    r = run_cli("zoo", f"--dataset=npz:{flat_npz}", f"--arch={arch}", "--width=4",
                f"--out={tmp_path}")
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --arch") and words in errors[0], \
        errors
  assert not list(tmp_path.glob("npz_*"))
