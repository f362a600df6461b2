"""Conv zoos' modules (`lmc_jax.nn.conv`) and the CIFAR augmentation (`lmc_jax.data.augment`).

Shapes and parameter trees of the full-size nets come from `jax.eval_shape` (tracing only,
no XLA compile); numerics are checked on tiny nets against numpy oracles.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.config import ConfigError, default_config
from lmc_jax.data import cifar10
from lmc_jax.data.augment import augment_batch, augment_choices
from lmc_jax.data.datasets import dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.conv import (
  CONV_ARCHS,
  NORMS,
  VGG,
  VGG11_STAGES,
  VGG11_STAGES_SMALL,
  ResNet20,
  make_conv_net,
)
from lmc_jax.nn.models import num_params
from lmc_jax.tree_utils import flatten

IMAGE_SHAPES = ((28, 28, 1), (32, 32, 3))


def _abstract_init(model, image_shape, n=2):
  x = jax.ShapeDtypeStruct((n, int(np.prod(image_shape))), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x), x


# ---------------------------------------------------------------- shapes and structure
@pytest.mark.parametrize("arch", CONV_ARCHS)
@pytest.mark.parametrize("image_shape", IMAGE_SHAPES)
@pytest.mark.parametrize("norm", NORMS)
def test_output_shapes(arch, image_shape, norm):
  model = make_conv_net(arch, 1, 7, image_shape, norm)
  variables, x = _abstract_init(model, image_shape, n=3)
  assert set(variables) == ({"params", "batch_stats"} if norm == "batchnorm" else {"params"})
  assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).shape == (3, 7)
  if norm == "batchnorm":
    out, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert out.shape == (3, 7)
    assert jax.tree_util.tree_structure(state["batch_stats"]) == jax.tree_util.tree_structure(
        variables["batch_stats"])


def test_vgg_default_stages_and_names():
  assert make_conv_net("vgg", 1, 10, (32, 32, 3), "none").stages == VGG11_STAGES
  assert make_conv_net("vgg", 1, 10, (28, 28, 1), "none").stages == VGG11_STAGES_SMALL
  model = make_conv_net("vgg", 2, 10, (28, 28, 1), "layernorm")
  shapes = {k: v.shape for k, v in flatten(_abstract_init(model, (28, 28, 1))[0]["params"]).items()}
  convs = [c for c in VGG11_STAGES_SMALL if c != "M"]
  c_in = 1
  for i, c in enumerate(convs):
    assert shapes.pop(f"Conv_{i}/kernel") == (3, 3, c_in, 2 * c)
    assert shapes.pop(f"LayerNorm_{i}/scale") == shapes.pop(f"LayerNorm_{i}/bias") == (2 * c,)
    c_in = 2 * c
  assert shapes == {"Dense_0/kernel": (2 * 512, 10), "Dense_0/bias": (10,)}


def test_resnet20_parameter_count():
  # By hand, width 1, 10 classes, convs without bias (a norm follows each), 2 params per norm
  # channel (scale, bias), projection shortcuts:
  #   stem       3*3*3*16 + 2*16                                            =     464
  #   stage 1    3 blocks * (2 * 3*3*16*16 + 2 * 2*16)                      =  14,016
  #   stage 2    3*3*16*32 + 3*3*32*32 + 2*2*32 + 1*1*16*32 + 2*32 (proj.)  =  14,528
  #              + 2 blocks * (2 * 3*3*32*32 + 2 * 2*32)                    =  37,120
  #   stage 3    3*3*32*64 + 3*3*64*64 + 2*2*64 + 1*1*32*64 + 2*64 (proj.)  =  57,728
  #              + 2 blocks * (2 * 3*3*64*64 + 2 * 2*64)                    = 147,968
  #   readout    64*10 + 10                                                 =     650
  #   total                                                                 = 272,474
  # He et al.'s 0.27M (269,722) uses parameter-free zero-padding shortcuts (option A); the
  # two projections add 16*32 + 2*32 + 32*64 + 2*64 = 2,752, i.e. 1.0%.
  # Without norms each conv gets a bias instead: 272,474 - 2*784 + 784 = 271,690.
  expected = {"batchnorm": 272_474, "layernorm": 272_474, "none": 271_690}
  for norm, count in expected.items():
    variables, _ = _abstract_init(make_conv_net("resnet20", 1, 10, (32, 32, 3), norm),
                                  (32, 32, 3))
    assert num_params(variables["params"]) == count
    assert abs(count - 269_722) / 269_722 < 0.02
  variables, _ = _abstract_init(make_conv_net("resnet20", 2, 10, (32, 32, 3), "batchnorm"),
                                (32, 32, 3))
  # Width 2: conv kernels x4 except the stem's (3 input channels) x2, norms x2, readout
  # 128*10 + 10: 4 * (272,474 - 1,568 - 650 - 432) + 2 * 432 + 2 * 1,568 + 1,290 = 1,084,586.
  assert num_params(variables["params"]) == 1_084_586


@pytest.mark.parametrize("norm", NORMS)
def test_resnet20_shortcut_structure(norm):
  model = make_conv_net("resnet20", 1, 10, (32, 32, 3), norm)
  shapes = {k: v.shape for k, v in flatten(_abstract_init(model, (32, 32, 3))[0]["params"]).items()}
  one_by_one = {k: s for k, s in shapes.items() if k.endswith("kernel") and s[:2] == (1, 1)}
  assert one_by_one == {"Block_3/Conv_shortcut/kernel": (1, 1, 16, 32),
                        "Block_6/Conv_shortcut/kernel": (1, 1, 32, 64)}
  for k in range(9):
    width = 16 * 2 ** (k // 3)
    c_in = 16 if k == 0 else 16 * 2 ** ((k - 1) // 3)
    assert shapes[f"Block_{k}/Conv_0/kernel"] == (3, 3, c_in, width)
    assert shapes[f"Block_{k}/Conv_1/kernel"] == (3, 3, width, width)
    has_bias = f"Block_{k}/Conv_0/bias" in shapes
    assert has_bias == (norm == "none")
    for suffix in ("0", "1", "shortcut"):
      has_norm = any(p.startswith(f"Block_{k}/") and p.split("/")[1].endswith(f"Norm_{suffix}")
                     for p in shapes)
      assert has_norm == (norm != "none" and (suffix != "shortcut" or k in (3, 6)))
  assert shapes["Conv_0/kernel"] == (3, 3, 3, 16)
  assert shapes["Dense_0/kernel"] == (64, 10)


# ---------------------------------------------------------------- numerics
def test_flat_rows_are_hwc():
  """`cifar10.normalise` flattens (n, H, W, C); the modules' reshape must undo it."""
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  flat = cifar10.normalise(images)
  expected = (images / 255.0 - cifar10.MEAN) / cifar10.STD
  np.testing.assert_allclose(flat.reshape(2, 32, 32, 3), expected, rtol=1e-5, atol=1e-5)


def _tiny_vgg_numpy(variables, x, image_shape, norm, train):
  """Numpy oracle of VGG(stages=(c,)): 3x3 SAME conv -> norm -> ReLU -> mean -> Dense.
  Returns (logits, batch mean, batch variance) of the conv output."""
  p = {k: np.asarray(v, np.float64) for k, v in flatten(variables["params"]).items()}
  n = len(x)
  img = np.asarray(x, np.float64).reshape((n,) + image_shape)
  padded = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h_, w_ = image_shape[:2]
  k = p["Conv_0/kernel"]
  h = sum(padded[:, i:i + h_, j:j + w_] @ k[i, j] for i in range(3) for j in range(3))
  if norm == "none":
    h = h + p["Conv_0/bias"]
  mu, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
  if norm == "batchnorm":
    if not train:
      s = flatten(variables["batch_stats"])
      mu, var = np.asarray(s["BatchNorm_0/mean"]), np.asarray(s["BatchNorm_0/var"])
    h = (h - mu) / np.sqrt(var + 1e-5) * p["BatchNorm_0/scale"] + p["BatchNorm_0/bias"]
  if norm == "layernorm":
    m, v = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - m) / np.sqrt(v + 1e-6) * p["LayerNorm_0/scale"] + p["LayerNorm_0/bias"]
  h = np.maximum(h, 0).mean((1, 2))
  return h @ p["Dense_0/kernel"] + p["Dense_0/bias"], mu, var


def _randomised(variables, seed):
  """Every leaf random (variances positive), so no scale or statistic hides behind 0 or 1."""
  rng = np.random.default_rng(seed)
  out = {}
  for col, tree in variables.items():
    out[col] = jax.tree_util.tree_map(
        lambda a: jax.device_put((rng.uniform(0.5, 2.0, a.shape) if col == "batch_stats"
                                  else rng.normal(size=a.shape)).astype(np.float32)), tree)
  return out


@pytest.mark.parametrize("norm", NORMS)
def test_tiny_vgg_matches_numpy(norm):
  image_shape = (5, 4, 2)
  model = VGG(stages=(3,), num_classes=2, norm=norm, image_shape=image_shape)
  x = np.random.default_rng(1).normal(size=(6, 40)).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  bound = 1 / np.sqrt(3 * 3 * 2)  # PyTorch's U(+-1/sqrt(fan_in)), fan_in = kh*kw*c_in
  assert 0.5 * bound < np.abs(variables["params"]["Conv_0"]["kernel"]).max() <= bound
  if norm != "none":
    name = "BatchNorm_0" if norm == "batchnorm" else "LayerNorm_0"
    np.testing.assert_array_equal(variables["params"][name]["scale"], 1)
    np.testing.assert_array_equal(variables["params"][name]["bias"], 0)
  variables = _randomised(variables, 2)
  expected, _, _ = _tiny_vgg_numpy(variables, x, image_shape, norm, train=False)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_train_and_eval():
  image_shape = (5, 4, 2)
  model = VGG(stages=(3,), num_classes=2, norm="batchnorm", image_shape=image_shape)
  x = np.random.default_rng(1).normal(size=(6, 40)).astype(np.float32)
  variables = _randomised(model.init(jax.random.key(0), x), 3)
  old = {k: np.asarray(v) for k, v in flatten(variables["batch_stats"]).items()}

  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))  # one program a mode
  logits, state = apply(variables, x, train=True, mutable=("batch_stats",))
  expected, mu, var = _tiny_vgg_numpy(variables, x, image_shape, "batchnorm", train=True)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  new = flatten(state["batch_stats"])
  # Flax momentum 0.9 == PyTorch momentum 0.1; Flax keeps the biased batch variance.
  np.testing.assert_allclose(new["BatchNorm_0/mean"], 0.9 * old["BatchNorm_0/mean"] + 0.1 * mu,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new["BatchNorm_0/var"], 0.9 * old["BatchNorm_0/var"] + 0.1 * var,
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(new["BatchNorm_0/mean"], old["BatchNorm_0/mean"])

  eval_logits = apply(variables, x)  # train=False: running statistics, no mutation
  expected_eval, _, _ = _tiny_vgg_numpy(variables, x, image_shape, "batchnorm", train=False)
  np.testing.assert_allclose(eval_logits, expected_eval, rtol=1e-4, atol=1e-4)
  assert not np.allclose(eval_logits, logits, atol=1e-3)
  np.testing.assert_allclose(apply(variables, x[:1]), eval_logits[:1], rtol=1e-5, atol=1e-5)


def test_resnet20_runs_and_eval_is_per_sample():
  """A real ResNet-20 forward pass (28x28x1): eval output of a sample does not depend on its
  batch; train output does, and the running statistics move."""
  model = make_conv_net("resnet20", 1, 10, (28, 28, 1), "batchnorm")
  variables = _randomised(_abstract_init(model, (28, 28, 1))[0], 4)
  variables["params"] = jax.tree_util.tree_map(lambda a: a * 0.2, variables["params"])
  x = jax.device_put(np.random.default_rng(5).normal(size=(3, 784)).astype(np.float32))
  apply_eval = jax.jit(lambda v, x: model.apply(v, x))
  out = apply_eval(variables, x)
  assert out.shape == (3, 10) and np.all(np.isfinite(out))
  np.testing.assert_allclose(apply_eval(variables, x[:1]), out[:1], rtol=1e-4, atol=1e-4)
  train_out, state = jax.jit(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert not np.allclose(train_out, out, atol=1e-3)
  for a, b in zip(jax.tree_util.tree_leaves(state["batch_stats"]),
                  jax.tree_util.tree_leaves(variables["batch_stats"])):
    assert not np.allclose(a, b)


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="mlp"), "Unknown conv architecture 'mlp'"),
    (dict(width=0), "Width multiplier 0"),
    (dict(norm="groupnorm"), "Unknown norm 'groupnorm'"),
    (dict(arch="vgg", image_shape=(8, 8, 3)), "8x8 image is too small for VGG"),
    (dict(arch="resnet20", image_shape=(3, 8, 1)), "3x8 image is too small for ResNet-20"),
    (dict(image_shape=(32, 32)), r"Image shape \(32, 32\)"),
    (dict(init="xavier"), "Unknown init 'xavier'"),
])
def test_bad_arguments(kwargs, match):
  args = dict(arch="resnet20", width=1, num_classes=10, image_shape=(32, 32, 3), norm="none")
  args.update(kwargs)
  with pytest.raises(LmcError, match=match):
    make_conv_net(**args)


def test_bad_inputs_and_datasets():
  assert dataset_info(default_config("mnist")).image_shape == (28, 28, 1)
  assert dataset_info(default_config("cifar10")).image_shape == (32, 32, 3)
  with pytest.raises(ConfigError, match="model.arch is vgg, a convolutional net, and moons has "
                                        "no images"):
    model_for(default_config("moons", arch="vgg"))
  with pytest.raises(ConfigError, match="data.dataset must be one of .*got 'svhn'"):
    default_config("svhn")
  with pytest.raises(LmcError, match="784 features"):
    _abstract_init(ResNet20(image_shape=(32, 32, 3)), (28, 28, 1))
  with pytest.raises(LmcError, match="hold 'X'"):
    _abstract_init(VGG(stages=(4, "X"), image_shape=(8, 8, 1)), (8, 8, 1))
  with pytest.raises(LmcError, match="too small for VGG"):
    _abstract_init(VGG(image_shape=(8, 8, 1)), (8, 8, 1))
  with pytest.raises(LmcError, match="augment_batch takes flat images"):
    augment_batch(jax.random.key(0), jnp.zeros((2, 10)), (2, 2, 2))
  with pytest.raises(LmcError, match="Crop padding -1"):
    augment_batch(jax.random.key(0), jnp.zeros((2, 8)), (2, 2, 2), pad=-1)


# ---------------------------------------------------------------- augmentation
def _augment_numpy(key, x, image_shape, pad):
  """Loop oracle: pad, crop at the offsets and flip as `augment_choices` draws them."""
  offsets, flips = (np.asarray(a) for a in augment_choices(key, len(x), pad))
  h, w, _ = image_shape
  out = []
  for img, (dy, dx), flip in zip(np.asarray(x).reshape((-1,) + image_shape), offsets, flips):
    p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    crop = p[dy:dy + h, dx:dx + w]
    out.append((crop[:, ::-1] if flip else crop).reshape(-1))
  return np.stack(out)


@pytest.mark.parametrize("image_shape, pad", [((6, 5, 3), 2), ((32, 32, 3), 4), ((4, 4, 1), 0)])
def test_augment_matches_loop(image_shape, pad):
  d = int(np.prod(image_shape))
  x = np.random.default_rng(0).normal(size=(16, d)).astype(np.float32)
  key = jax.random.key(7)
  got = jax.jit(augment_batch, static_argnums=(2, 3))(key, x, image_shape, pad)
  assert got.shape == x.shape
  np.testing.assert_array_equal(got, _augment_numpy(key, x, image_shape, pad))
  np.testing.assert_array_equal(augment_batch(key, x, image_shape, pad), got)  # same key


def test_augment_choices_range():
  offsets, flips = augment_choices(jax.random.key(0), 2000, 4)
  assert offsets.shape == (2000, 2) and flips.shape == (2000,)
  assert set(np.unique(offsets)) == set(range(9))
  assert 0.45 < float(np.mean(flips)) < 0.55


def test_augment_vmap_over_models():
  image_shape = (6, 5, 3)
  x = jax.device_put(np.random.default_rng(1).normal(size=(3, 8, 90)).astype(np.float32))
  keys = jax.random.split(jax.random.key(3), 3)
  batched = jax.jit(jax.vmap(augment_batch, (0, 0, None)), static_argnums=2)(keys, x, image_shape)
  one = jax.jit(augment_batch, static_argnums=2)
  for m in range(3):
    np.testing.assert_array_equal(batched[m], one(keys[m], x[m], image_shape))
  assert not np.array_equal(batched[0], one(keys[1], x[0], image_shape))
