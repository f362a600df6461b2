"""`host_arrays`: indexing and stacking of arrays in host memory by numpy give jax.numpy's
results bit for bit (values, dtype, device and whether committed to it) and compile nothing;
arrays numpy must not touch (tracers, keys, weak types) go through jax.numpy; and the library
paths built on it (zoo slices, host loops, random draws, permutations) compile nothing per
leaf shape."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax import host_arrays, tree_utils
from lmc_jax.execution import map_items, run_steps
from lmc_jax.nn import random_draws
from lmc_jax.nn.optim import cached_adam, compiled_init
from lmc_jax.symmetry.spec import (
  apply_permutation,
  apply_soft_permutation,
  mlp_permutation_spec,
)
from tests.helpers import random_params
from tests.helpers.compiles import traced_programs

DTYPES = [jnp.float32, jnp.bfloat16, jnp.int32, jnp.bool_]


def _same(host, jax_result):
  """Same values, dtype, shape, device and commitment; a jax array, not numpy."""
  assert isinstance(host, jax.Array) and not isinstance(host, np.ndarray)
  assert host.dtype == jax_result.dtype and host.shape == jax_result.shape
  assert np.asarray(host).tobytes() == np.asarray(jax_result).tobytes()
  assert host.devices() == jax_result.devices() and host.committed == jax_result.committed


def _array(shape, dtype, seed=0):
  values = np.random.default_rng(seed).normal(size=shape) * 5
  return jax.device_put(values.astype(jnp.dtype(dtype)))


@pytest.mark.parametrize("dtype,committed", [(d, False) for d in DTYPES] + [(jnp.float32, True)])
def test_index_and_stack_equal_jax_numpy_bit_for_bit(dtype, committed):
  x = _array((4, 3, 2), dtype)
  if committed:
    x = jax.device_put(x, jax.devices()[0])
  for k in (0, -1, -4, np.array([3, 0, 3]), jnp.array([1, 2]), np.int64(2), jnp.int32(1)):
    _same(host_arrays.index(x, k), x[k])
  xs = [x, _array((4, 3, 2), dtype, 1), x]
  _same(host_arrays.stack(xs), jnp.stack(xs))


def test_host_memory_is_indexed_and_stacked_with_nothing_compiled():
  x = _array((5, 11, 3), jnp.float32)  # a shape no other test uses
  with traced_programs() as traced:
    parts = [host_arrays.index(x, k) for k in range(5)]
    host_arrays.stack(parts)
    host_arrays.index(x, np.array([4, 1]))
  assert traced == []
  with traced_programs() as traced:  # the control: jax.numpy compiles these shapes
    jnp.stack([x[k] for k in range(5)])
  assert traced


def test_what_numpy_must_not_touch_goes_through_jax_numpy():
  keys = jax.random.split(jax.random.key(0), 3)
  assert host_arrays.host_view(keys) is None
  assert jax.random.key_data(host_arrays.index(keys, 1)).tolist() == \
      jax.random.key_data(keys[1]).tolist()
  weak = jnp.asarray(2.0) * jnp.ones(3)[0]  # weakly typed: its type follows what it meets
  assert host_arrays.host_view(jnp.asarray(2.0)) is None and weak.dtype == jnp.float32
  x = _array((3, 2), jnp.float32)
  # Under jit the array is a tracer: the result is traced, as jnp's own.
  out = jax.jit(lambda a, k: host_arrays.stack([host_arrays.index(a, k)] * 2))(x, 2)
  np.testing.assert_array_equal(out, np.stack([np.asarray(x)[2]] * 2))
  # Mixed dtypes are promoted as jnp.stack promotes them, not as numpy would.
  _same(host_arrays.stack([x, _array((3, 2), jnp.int32)]),
        jnp.stack([x, _array((3, 2), jnp.int32)]))
  # numpy in, numpy out for index (as `a[k]` on numpy); jnp.stack of numpy is a jax array.
  assert isinstance(host_arrays.index(np.arange(4), 2), np.integer)
  assert isinstance(host_arrays.stack([np.arange(2), np.arange(2)]), jax.Array)
  with pytest.raises(IndexError):  # numpy refuses an index jax would clamp to the last row
    host_arrays.index(x, 3)


def test_zoo_slices_and_host_loops_compile_only_the_step():
  xs = {"a": _array((4, 7, 5), jnp.float32), "b": _array((4, 13), jnp.int32, 1)}

  def step(carry, item):
    return carry + item["a"].sum(), item["b"] * 2

  double = jax.jit(lambda item: item["b"] * 2)
  first = jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[:1]), xs)
  run_steps(step, jnp.float32(0), first, from_host=True)  # the step compiled, on one item
  double(jax.tree_util.tree_map(lambda a: a[0], first))
  with traced_programs() as traced:
    taken = tree_utils.take(xs, 2)
    carry, ys = run_steps(step, jnp.float32(0), xs, from_host=True)
    mapped = map_items(double, xs, from_host=True)
  assert traced == []  # items taken and outputs stacked by numpy
  np.testing.assert_array_equal(taken["a"], np.asarray(xs["a"])[2])
  np.testing.assert_array_equal(ys, np.asarray(xs["b"]) * 2)
  np.testing.assert_array_equal(mapped, np.asarray(xs["b"]) * 2)
  assert float(carry) == pytest.approx(float(np.asarray(xs["a"]).sum()), rel=1e-5)


def test_draws_of_new_shapes_in_a_drawn_size_class_compile_nothing():
  key = jax.random.key(5)
  random_draws.normal(key, (300,))  # the 512 class, compiled once
  with traced_programs() as traced:
    draws = [random_draws.normal(key, shape) for shape in [(13, 29), (3, 7, 19), (401,)]]
  assert traced == []
  for d in draws:  # still jax.random's numbers for those shapes
    assert np.asarray(d).tobytes() == np.asarray(jax.random.normal(key, d.shape)).tobytes()


def test_a_permutation_of_concrete_params_compiles_nothing_and_equals_the_traced_one():
  _, params = random_params(jax.random.key(2), (9, 6), d_in=5)
  spec = mlp_permutation_spec(2)
  perm = {"P_0": np.random.default_rng(0).permutation(9),
          "P_1": jnp.asarray(np.random.default_rng(1).permutation(6))}
  with traced_programs() as traced:
    host = apply_permutation(spec, perm, params)
  assert traced == []
  traced_result = jax.jit(lambda q, p: apply_permutation(spec, q, p))(perm, params)
  for a, b in zip(jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(traced_result)):
    assert isinstance(a, jax.Array) and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_model_taken_from_a_zoo_holds_its_own_memory():
  zoo = jax.device_put(np.arange(4 * 4096, dtype=np.float32).reshape(4, 4096))
  one = host_arrays.index(zoo, 1)
  start, size = zoo.unsafe_buffer_pointer(), 4 * 4096 * 4
  assert not start <= one.unsafe_buffer_pointer() < start + size  # not inside the zoo's buffer
  doubled = jax.jit(lambda a: a * 2, donate_argnums=0)(one)  # donating it leaves the zoo alone
  np.testing.assert_array_equal(doubled, np.arange(4096, 8192) * 2)
  np.testing.assert_array_equal(zoo[1], np.arange(4096, 8192))


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # nan, inf to ints
@pytest.mark.parametrize("source", [np.float64, np.float32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("dtype", [None, jnp.float32, jnp.int32])
def test_to_device_equals_jnp_asarray_and_compiles_nothing(source, dtype):
  rng = np.random.default_rng(3)
  values = rng.normal(size=(6, 17)) * 10.0 ** rng.integers(-44, 40, (6, 17))
  values[0, :4] = [np.nan, np.inf, -0.0, 7e-46]
  x = values.astype(source) if source is not np.int64 else rng.integers(-2 ** 40, 2 ** 40, (6, 17))
  for case in (x, x[::2, 3:], np.array(x[0, 0])):  # a view, a 0-d array
    with traced_programs() as traced:
      got = host_arrays.to_device(case, dtype)
    assert traced == []
    want = jnp.asarray(case, dtype)
    _same(got, want)
    assert got.weak_type == want.weak_type
  written = x.copy()
  got = host_arrays.to_device(written)
  written[...] = 0  # the device array holds a copy of its own, as jnp.asarray's does
  _same(got, jnp.asarray(x))


def test_to_device_leaves_what_is_not_numpy_to_jnp_asarray():
  x = _array((3, 2), jnp.float32)
  assert host_arrays.to_device(x) is jnp.asarray(x)
  assert host_arrays.to_device(2.0).weak_type and host_arrays.to_device([1, 2]).shape == (2,)
  out = jax.jit(lambda a: host_arrays.to_device(a, jnp.int32) + 1)(x)  # a tracer
  _same(out, jnp.asarray(x, jnp.int32) + 1)


def test_compiled_adam_init_is_the_eager_init():
  tx = cached_adam(1e-3)
  tree = {"w": _array((3, 7), jnp.float32), "b": _array((3, 5), jnp.float32, 1)}
  for batched in (False, True):
    init = jax.vmap(tx.init) if batched else tx.init
    got, want = compiled_init(tx, batched)(tree), init(tree)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      _same(a, b)
      assert a.weak_type == b.weak_type


def test_a_soft_permutation_of_host_params_compiles_only_its_products():
  _, params = random_params(jax.random.key(6), (9, 6), d_in=5)
  numpy_params = jax.tree_util.tree_map(np.asarray, params)
  spec = mlp_permutation_spec(2)
  rng = np.random.default_rng(2)
  mats = {"P_0": rng.random((9, 9)).astype(np.float32), "P_1": np.eye(6, dtype=np.float32)}
  for given in (params, numpy_params):
    with traced_programs() as traced:
      got = apply_soft_permutation(spec, mats, given)
    assert set(traced) <= {"dot_general"}
    for path, leaf in tree_utils.flatten(given).items():  # the oracle: jax.numpy op by op
      want = jnp.asarray(leaf)
      for axis, p in enumerate(spec.axes_to_perm[path]):
        if p is not None:
          product = jnp.tensordot(jnp.asarray(mats[p]), want, axes=([1], [axis]))
          want = jnp.moveaxis(product, 0, axis)
      _same(tree_utils.flatten(got)[path], want)
