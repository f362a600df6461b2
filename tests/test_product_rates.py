import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmc_jax.analysis.product_rates import Product, matrix_products, product_seconds
from lmc_jax.nn.precision import bf16_dense


def test_products_are_found_inside_scans_and_vmaps_with_their_flops_by_hand():
  a, b = jnp.ones((6, 5)), jnp.ones((5, 4))
  stack = jnp.ones((3, 6, 5))

  def fn(a, b, stack):
    def body(c, s):
      return c + jnp.sum(s @ b), None  # (6,5)x(5,4), traced once inside the scan
    total, _ = jax.lax.scan(body, 0.0, stack)
    batched = jax.vmap(lambda s: s.T @ s)(stack)  # (3: 5x6 @ 6x5), a batched product
    return total + jnp.sum(a @ b) + jnp.sum(batched)

  products = matrix_products(fn, a, b, stack)
  flops = sorted(p.flops for p in products)
  assert flops == sorted([2 * 6 * 5 * 4, 2 * 6 * 5 * 4, 2 * 3 * 5 * 6 * 5])
  batched = [p for p in products if p.dimension_numbers[1][0]]
  assert len(batched) == 1 and batched[0].lhs[0] == 3 and batched[0].rhs[0] == 3


def test_a_product_no_output_needs_is_left_out():
  x, w = jnp.ones((8, 7)), jnp.ones((7, 3))

  def fn(x, w):
    unused = x @ jnp.ones((7, 9))  # noqa: F841  (dead: XLA drops it, so must the count)
    return jax.value_and_grad(lambda w: jnp.sum(bf16_dense(x, w)))(w)  # dx is dead too

  products = matrix_products(fn, x, w)
  # Forward x @ w and the weight gradient x^T g remain; x @ ones(7, 9) and g @ w^T do not.
  assert sorted(p.flops for p in products) == [2 * 8 * 7 * 3, 2 * 8 * 7 * 3]
  assert all(p.lhs_dtype == "bfloat16" and p.out_dtype == "float32" for p in products)


def test_product_seconds_sums_the_products_and_leaves_convolutions_out():
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  r = product_seconds(lambda a, b: (a @ b) @ b.T, a, b)
  assert r.flops == 2 * 64 * 32 * 16 * 2
  assert r.seconds > 0 and r.flops_per_s == pytest.approx(r.flops / r.seconds)
  image, kernel = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  conv = lambda i, k: jax.lax.conv_general_dilated(i, k, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert product_seconds(conv, image, kernel) is None


def test_flops_of_a_general_contraction_match_einsum_by_hand():
  p = Product((2, 3, 4, 5), (2, 5, 4, 6), "float32", "float32",
              (((2, 3), (2, 1)), ((0,), (0,))), "float32")
  # batch 2, free 3 (lhs) and 6 (rhs), contracted 4 x 5.
  assert p.flops == 2 * 2 * 3 * 6 * 4 * 5
  out = jnp.einsum("bikl,blkj->bij", np.ones((2, 3, 4, 5)), np.ones((2, 5, 4, 6)))
  assert out.shape == (2, 3, 6) and float(out[0, 0, 0]) == 20.0
