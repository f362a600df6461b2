"""`derive_spec` and `check_spec` on networks written here by hand, each with the partition of
axes worked out by hand as the oracle."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmc_jax
from lmc_jax import LmcError, check_spec, derive_spec, spec_without_prefix
from lmc_jax.align.weight import weight_matching
from lmc_jax.nn import random_draws
from lmc_jax.nn.models import make_mlp
from lmc_jax.symmetry.spec import (
  apply_permutation,
  invert_permutation,
  mlp_permutation_spec,
  perm_sizes,
  random_permutation,
)
from lmc_jax.tree_utils import flatten


def partition(spec):
  """The spec as a set of frozensets of (path, axis): names do not matter."""
  return {frozenset(axes) for axes in spec.perm_to_axes.values()}


def x_of(shape, seed=1):
  return random_draws.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("hidden, layernorm", [((7,), "none"), ((5, 6, 7), "none"),
                                               ((5, 6, 7), "after_relu"), ((4, 4), "before_relu")])
def test_mlp_derives_the_hand_written_spec(hidden, layernorm):
  model = make_mlp(hidden, 3, layernorm)
  x = x_of((2, 4))
  variables = model.init(jax.random.key(0), x)
  spec = spec_without_prefix(derive_spec(model, variables, x))
  want = mlp_permutation_spec(len(hidden), layernorm != "none")
  assert spec.axes_to_perm == want.axes_to_perm  # same partition, same names P_0, P_1, ...
  assert check_spec(model, variables, derive_spec(model, variables, x), x_of((9, 4))) < 1e-5


class ResidualConvNet(nn.Module):
  """Stem conv -> BN -> ReLU, two residual blocks (identity, then 1x1 projection), pooling."""
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], 8, 8, 2)
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    h = nn.relu(norm()(nn.Conv(4, (3, 3), use_bias=False, name="stem")(x)))
    y = nn.relu(norm()(nn.Conv(3, (3, 3), use_bias=False, name="a1")(h)))  # inner width 3
    y = norm()(nn.Conv(4, (3, 3), use_bias=False, name="a2")(y))
    h = nn.relu(h + y)  # identity shortcut: a2's outputs are the stem's units
    y = nn.relu(nn.Conv(5, (3, 3), strides=2, name="b1")(h))
    y = nn.Conv(6, (3, 3), name="b2")(y)
    s = nn.Conv(6, (1, 1), strides=2, name="proj")(h)  # projection: a new stream
    h = nn.relu(y + s)
    h = nn.max_pool(h, (2, 2), (2, 2))
    return nn.Dense(3, name="head")(h.mean((1, 2)))


@functools.lru_cache(maxsize=None)
def _residual_conv_net():
  """(model, variables): initialised once by one compiled program (the tests do not change
  them in place); the variables do not depend on the batch size."""
  model = ResidualConvNet()
  return model, jax.jit(model.init)(jax.random.key(0), x_of((2, 128)))


def _varied(variables):
  """Every leaf moved up by a uniform draw (running statistics too), the sum taken by numpy
  (bit for bit as jax would, with no program per leaf shape)."""
  return jax.tree_util.tree_map(lambda v: jax.device_put(
      np.asarray(v) + np.asarray(random_draws.uniform(jax.random.key(5), v.shape))), variables)


def test_residual_conv_net_partition_and_invariance():
  (model, variables), x = _residual_conv_net(), x_of((2, 128))
  spec = derive_spec(model, variables, x)
  bn = lambda i: [(f"params/BatchNorm_{i}/scale", 0), (f"params/BatchNorm_{i}/bias", 0),
                  (f"batch_stats/BatchNorm_{i}/mean", 0), (f"batch_stats/BatchNorm_{i}/var", 0)]
  stream = {("params/stem/kernel", 3), *bn(0), ("params/a1/kernel", 2), ("params/a2/kernel", 3),
            *bn(2), ("params/b1/kernel", 2), ("params/proj/kernel", 2)}
  inner_a = {("params/a1/kernel", 3), *bn(1), ("params/a2/kernel", 2)}
  inner_b = {("params/b1/kernel", 3), ("params/b1/bias", 0), ("params/b2/kernel", 2)}
  out_b = {("params/b2/kernel", 3), ("params/b2/bias", 0), ("params/proj/kernel", 3),
           ("params/proj/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(s) for s in (stream, inner_a, inner_b, out_b)}
  assert spec.axes_to_perm["params/head/bias"] == (None,)
  assert check_spec(model, variables, spec, x_of((5, 128))) < 1e-5
  # Each permutation alone is a symmetry too (no two independent groups were merged).
  sizes = perm_sizes(spec, variables)
  apply = jax.jit(model.apply)  # one program, not one per op
  base = apply(variables, x_of((5, 128)))
  for name in sizes:
    perm = {p: np.arange(n) for p, n in sizes.items()}
    perm[name] = np.roll(perm[name], 1)
    out = apply(apply_permutation(spec, perm, variables), x_of((5, 128)))
    np.testing.assert_allclose(out, base, atol=1e-5)


def test_training_mode_ties_the_updated_statistics_to_the_running_ones():
  (model, variables), x = _residual_conv_net(), x_of((4, 128))
  eval_spec = derive_spec(model, variables, x)
  train_spec = derive_spec(model, variables, x, train=True, mutable=["batch_stats"])
  assert partition(train_spec) == partition(eval_spec)
  # check_spec compares the updated statistics moved with their units: 0 for the spec, and
  # not for one that leaves the running statistics where they are.
  kw = dict(train=True, mutable=["batch_stats"])
  assert check_spec(model, variables, train_spec, x, **kw) < 1e-4
  from lmc_jax.symmetry.spec import permutation_spec_from_axes
  frozen = {p: (None,) * len(a) if p.startswith("batch_stats") else a
            for p, a in train_spec.axes_to_perm.items()}
  varied = _varied(variables)
  assert check_spec(model, varied, permutation_spec_from_axes(frozen), x, **kw) > 1e-3
  perm = random_permutation(jax.random.key(3), perm_sizes(eval_spec, variables))
  train_step = jax.jit(functools.partial(model.apply, **kw))  # one program, not one per op
  _, upd = train_step(variables, x)
  _, upd_p = train_step(apply_permutation(eval_spec, perm, variables), x)
  moved = apply_permutation(eval_spec, perm, {"params": variables["params"], **upd})
  for k, v in flatten(upd_p).items():
    np.testing.assert_allclose(v, flatten(moved)[k], atol=1e-5)


class Attention(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], 5, 6)  # 5 tokens of 6 features
    h = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, out_features=6,
                                        name="attn")(x)
    h = nn.LayerNorm()(x + h)
    h = nn.Dense(6, name="up")(nn.gelu(nn.Dense(10, name="down")(h)))  # no residual
    return nn.Dense(3)(h.mean(1))


def test_attention_block_heads_and_head_features():
  model, x = Attention(), x_of((2, 30))
  variables = jax.jit(model.init)(jax.random.key(0), x)  # one program, not one per op
  spec = derive_spec(model, variables, x)
  a = "params/attn/"
  heads = {(a + f"{q}/kernel", 1) for q in ("query", "key", "value")} | \
      {(a + f"{q}/bias", 0) for q in ("query", "key", "value")} | {(a + "out/kernel", 0)}
  qk = {(a + "query/kernel", 2), (a + "query/bias", 1), (a + "key/kernel", 2), (a + "key/bias", 1)}
  v = {(a + "value/kernel", 2), (a + "value/bias", 1), (a + "out/kernel", 1)}
  mlp = {("params/down/kernel", 1), ("params/down/bias", 0), ("params/up/kernel", 0)}
  mlp_out = {("params/up/kernel", 1), ("params/up/bias", 0), ("params/Dense_0/kernel", 0)}
  # The residual stream (6 features) reaches the model's input: it can not move; the MLP's
  # output is not added back to it, so it can.
  assert partition(spec) == {frozenset(s) for s in (heads, qk, v, mlp, mlp_out)}
  assert check_spec(model, variables, spec, x_of((4, 30))) < 1e-5


class Depthwise(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], 6, 6, 1)
    h = nn.relu(nn.Conv(4, (3, 3))(x))
    h = nn.tanh(nn.Conv(4, (3, 3), feature_group_count=4)(h))  # depthwise
    return nn.Dense(2)(h.max((1, 2)))


def test_depthwise_convolution_keeps_channels_together():
  model, x = Depthwise(), x_of((2, 36))
  variables = jax.jit(model.init)(jax.random.key(0), x)  # one program, not one per op
  spec = derive_spec(model, variables, x)
  assert len(spec.perm_to_axes) == 1
  assert set(spec.perm_to_axes["P_0"]) == {
      ("params/Conv_0/kernel", 3), ("params/Conv_0/bias", 0), ("params/Conv_1/kernel", 3),
      ("params/Conv_1/bias", 0), ("params/Dense_0/kernel", 0)}
  assert check_spec(model, variables, spec, x_of((3, 36))) < 1e-5


class SliceHidden(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(6, name="inner")(x))
    return nn.Dense(2)(h[:, :3])  # only the first three units reach the output


class ArgmaxHidden(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(6, name="scores")(x)
    return nn.Dense(2)(jax.nn.one_hot(jnp.argmax(h, -1), 7))


@pytest.mark.parametrize("module, op", [(SliceHidden(), "slice"), (ArgmaxHidden(), "argmax")])
def test_an_op_it_can_not_follow_is_named_with_the_variables(module, op):
  x = x_of((2, 4))
  variables = module.init(jax.random.key(0), x)
  with pytest.raises(LmcError, match=rf"can not follow `{op}`.*params/\w+/kernel.*by hand"):
    derive_spec(module, variables, x)


class Regroup(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(4, name="inner")(x.reshape(x.shape[0], 6, -1)))  # 6 tokens x 4 units
    return nn.Dense(2)(h.reshape(h.shape[0], 4, 6).sum(1))  # (6, 4) read as (4, 6)


def test_a_reshape_that_regroups_hidden_units_is_refused():
  x = x_of((2, 18))
  variables = Regroup().init(jax.random.key(0), x)
  with pytest.raises(LmcError, match="reshape .merging or splitting axes.*params/inner"):
    derive_spec(Regroup(), variables, x)


class Unused(nn.Module):
  @nn.compact
  def __call__(self, x):
    self.param("spare", nn.initializers.ones, (3,))
    return nn.Dense(2)(nn.relu(nn.Dense(3)(x)))


def test_unused_variables_are_named():
  x = x_of((2, 4))
  variables = Unused().init(jax.random.key(0), x)
  with pytest.raises(LmcError, match="params/spare.*do not take part.*by hand"):
    derive_spec(Unused(), variables, x)


def test_check_spec_catches_a_wrong_spec():
  model = make_mlp((5, 6), 3)
  x = x_of((2, 4))
  variables = model.init(jax.random.key(0), x)
  spec = derive_spec(model, variables, x)
  broken = dict(spec.axes_to_perm)
  broken["params/Dense_1/kernel"] = (None, "P_1")  # forgets that Dense_1 reads P_0's units
  from lmc_jax.symmetry.spec import permutation_spec_from_axes
  assert check_spec(model, variables, permutation_spec_from_axes(broken), x_of((9, 4))) > 1e-2
  wrong_shape = dict(spec.axes_to_perm)
  wrong_shape["params/Dense_1/kernel"] = ("P_0",)
  with pytest.raises(LmcError, match="Dense_1/kernel"):
    check_spec(model, variables, permutation_spec_from_axes(wrong_shape), x)


def test_shapes_alone_give_the_spec_the_arrays_give_and_compile_nothing():
  """`derive_spec` only traces: `jax.ShapeDtypeStruct`s in place of the variables (and of
  the inputs) give the same spec, and `network_spec`, which passes shapes, compiles no
  program (it made a zeros array per leaf shape before)."""
  from lmc_jax.nn.conv import make_conv_net
  from lmc_jax.nn.transformer import make_vit
  from lmc_jax.symmetry.derive import network_spec
  nets = [(make_mlp((5, 6, 7), 3, "after_relu"), 4),
          (make_conv_net("resnet20", 1, 10, (8, 8, 3), "batchnorm"), 192),
          (make_vit(1, 2, 4, 7, "mean", 10, (14, 14, 1)), 196)]
  abstract = lambda tree: jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
  for model, d_in in nets:
    x = x_of((2, d_in))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes: nothing drawn
    zeros = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), variables)
    want = derive_spec(model, zeros, x)
    assert derive_spec(model, abstract(variables), abstract(x)) == want
    compiled = []
    listen = lambda event, duration, **kw: compiled.append(event) \
        if event.endswith("backend_compile_duration") else None
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
      network_spec.cache_clear()
      assert network_spec(model, d_in) == want
    finally:
      jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == [], type(model).__name__


def test_weight_matching_recovers_a_planted_permutation_with_batchnorm():
  (model, variables), x = _residual_conv_net(), x_of((2, 128))
  # Give the running statistics values a permutation would show.
  variables = _varied(variables)
  spec = derive_spec(model, variables, x)
  planted = random_permutation(jax.random.key(7), perm_sizes(spec, variables))
  shuffled = apply_permutation(spec, planted, variables)
  found = weight_matching(jax.random.key(0), spec, variables, shuffled).perm
  for p in planted:
    np.testing.assert_array_equal(found[p], invert_permutation(planted)[p])
  back = apply_permutation(spec, found, shuffled)
  for k, v in flatten(variables).items():
    np.testing.assert_allclose(flatten(back)[k], v, atol=1e-6)


def test_the_readme_example_runs(capsys):
  from pathlib import Path
  readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
  blocks = [b.split("```", 1)[0] for b in readme.split("```python")[1:]]
  first = next(b for b in blocks if "derive_spec(net" in b and "lmc_jax.merge(" not in b)
  then = next(b for b in blocks if "repair_sites(" in b)  # runs on the first's names
  namespace = {}
  exec(compile(first, "README.md", "exec"), namespace)
  assert float(capsys.readouterr().out.strip()) < 1e-5
  exec(compile(then, "README.md", "exec"), namespace)
  assert namespace["curves"].loss.shape == (1, 11)
  assert len(namespace["joint"]) == 2
  for p, n in lmc_jax.perm_sizes(namespace["spec"], namespace["a"]).items():
    assert sorted(namespace["perm_by_activations"][p]) == list(range(n))
