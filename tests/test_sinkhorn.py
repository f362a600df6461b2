"""Sinkhorn matching: the batched projection against a numpy loop, the whole method against
a plain Python loop of the same algorithm and against the per-matrix projection it
replaced, planted permutations recovered on an MLP and on a conv net with BatchNorm, and
the accelerator's compiled path against the CPU's host loop.

Planted permutations are recovered from wrong starts by the distance objective. The data
objectives are not tested so: on a net confident on its own labels their loss is flat
(zero) around every start, and on a less confident one lines with a lower loss than the
planted copy's exist (both seen on `bn_net`); test_alignment_methods checks them from
weight matching's start on a teacher MLP."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmc_jax import LmcError, derive_spec
from lmc_jax.align.sinkhorn import project_all, sinkhorn_matching, start_logits
from lmc_jax.execution import plan_from_environment
from lmc_jax.nn import random_draws
from lmc_jax.nn.forward import apply_eval
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.symmetry.spec import (
  apply_permutation,
  apply_soft_permutation,
  identity_permutation,
  mlp_permutation_spec,
  perm_sizes,
)
from tests.helpers import random_params

CPU = plan_from_environment(environ={})
FORCED = plan_from_environment(environ={"LMC_JAX_ACCELERATOR_PATHS": "1"})


def _numpy_sinkhorn(logits, iters):
  """Row then column normalisation in log space, float64, one matrix at a time."""
  log_p = np.asarray(logits, np.float64)
  for _ in range(iters):
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    log_p = log_p - np.log(np.exp(log_p).sum(0, keepdims=True))
  return np.exp(log_p)


def _stack(*trees):
  return jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(v) for v in a]), *trees)


def test_batched_projection_matches_a_numpy_loop_per_matrix():
  rng = np.random.default_rng(0)
  sizes = {"a": 3, "b": 5, "c": 3, "d": 7, "e": 5}  # two pairs share a size, one stands alone
  logits = {p: (2 * rng.normal(size=(n, n))).astype(np.float32) for p, n in sizes.items()}
  got = jax.jit(lambda lg: project_all(lg, 30))(logits)
  assert list(got) == list(sizes)
  for p, v in logits.items():
    want = _numpy_sinkhorn(v, 30)
    np.testing.assert_allclose(got[p], want, atol=2e-6)
    np.testing.assert_allclose(np.asarray(got[p]).sum(0), 1, atol=1e-5)  # columns exactly
    np.testing.assert_allclose(np.asarray(got[p]).sum(1), 1, atol=1e-2)  # rows nearly
    assert (np.asarray(got[p]) >= 0).all()
  # From a matrix near the fixed point, rows sum to 1 as well.
  near = jax.jit(lambda lg: project_all(lg, 1))(  # compiled once, not op by op
      {p: np.log(_numpy_sinkhorn(v, 500)).astype(np.float32) for p, v in logits.items()})
  for v in near.values():
    np.testing.assert_allclose(np.asarray(v).sum(1), 1, atol=1e-4)


def _plain_loop(objective, a, bs, starts, x, y, model, spec, steps, lr, iters=20):
  """The algorithm written out: one model at a time, a Python loop over Adam steps, each
  matrix projected by its own Python loop, the whole batch at alpha 1/2 or the distance."""
  def project(lg):
    out = {}
    for p, v in lg.items():
      for _ in range(iters):
        v = v - jax.nn.logsumexp(v, axis=1, keepdims=True)
        v = v - jax.nn.logsumexp(v, axis=0, keepdims=True)
      out[p] = jnp.exp(v)
    return out

  def loss(lg, b):
    soft = apply_soft_permutation(spec, project(lg), b)
    if objective == "distance":
      d = sum(jnp.sum((u - v) ** 2) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                    jax.tree_util.tree_leaves(soft)))
      return d / sum(jnp.sum(u ** 2) for u in jax.tree_util.tree_leaves(a))
    mid = jax.tree_util.tree_map(lambda u, v: 0.5 * u + 0.5 * v, a, soft)
    return jnp.mean(loss_and_correct(apply_eval(model, mid, x), y)[0])

  tx = optax.adam(lr)

  @jax.jit
  def step(lg, state, b):  # one Adam step, compiled once (not op by op)
    value, g = jax.value_and_grad(loss)(lg, b)
    updates, state = tx.update(g, state, lg)
    return optax.apply_updates(lg, updates), state, value

  mats, losses = [], []
  for b, start in zip(bs, starts):
    lg = {p: jax.device_put(start_logits(start[p])) for p in spec.perm_to_axes}
    state = jax.jit(tx.init)(lg)
    history = []
    for _ in range(steps):
      lg, state, value = step(lg, state, b)
      history.append(float(value))
    mats.append(jax.jit(project)(lg))
    losses.append(history)
  return mats, np.asarray(losses).T


@pytest.mark.parametrize("objective", ["midpoint", "distance"])
def test_matching_equals_the_algorithm_written_as_a_plain_loop(objective):
  spec = mlp_permutation_spec(2)
  model, a = random_params(jax.random.key(3), (5, 4), d_in=2, d_out=2)
  bs = [random_params(jax.random.key(k), (5, 4), d_in=2, d_out=2)[1] for k in (4, 5)]
  starts = [{"P_0": np.array([1, 0, 2, 4, 3]), "P_1": np.arange(4)}, identity_permutation(
      {"P_0": 5, "P_1": 4})]
  # 200 samples: each step's batch is all of them (in some order), so the mean loss is the
  # full batch's.
  x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  # 5 Sinkhorn iterations: the plain loop unrolls them into its graph (20 compile slowly).
  res = sinkhorn_matching(jax.random.key(0), model, spec, a, _stack(*bs), starts, x, y,
                          steps=6, lr=0.3, iters=5, objective=objective)
  mats, losses = _plain_loop(objective, a, bs, starts, x, y, model, spec, 6, 0.3, iters=5)
  np.testing.assert_allclose(res.losses, losses, rtol=1e-4, atol=1e-6)
  for k, want in enumerate(mats):
    for p in want:
      np.testing.assert_allclose(res.soft[p][k], want[p], atol=1e-4)
  assert not np.allclose(res.soft["P_0"][0], _numpy_sinkhorn(start_logits(starts[0]["P_0"]), 5),
                         atol=1e-3)  # the steps moved the matrices


class BnConvNet(nn.Module):
  """Conv (no bias) -> BatchNorm -> ReLU twice, mean-pooled, a hidden Dense, a readout."""
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], 5, 5, 2)
    for i, c in enumerate((6, 5)):
      x = nn.Conv(c, (3, 3), use_bias=False, name=f"conv{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x))
    x = nn.relu(nn.Dense(7, name="hidden")(x.mean((1, 2))))
    return nn.Dense(3, name="head")(x)


@pytest.fixture(scope="module")
def bn_net():
  """A BatchNorm conv net with every leaf random (running variances positive), data it
  labels itself, its spec, and a copy of it under a planted permutation."""
  model = BnConvNet()
  x = np.asarray(random_draws.normal(jax.random.key(0), (200, 50)), np.float32)
  v = jax.eval_shape(model.init, jax.random.key(1), x[:2])  # shapes only: every leaf drawn
  leaves, tree = jax.tree_util.tree_flatten(v)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  a = jax.tree_util.tree_unflatten(tree, [np.asarray(random_draws.normal(k, u.shape)) for k, u
                                          in zip(keys, leaves)])
  a["batch_stats"] = jax.tree_util.tree_map(lambda u: np.float32(0.5) + np.abs(u),
                                            a["batch_stats"])
  spec = derive_spec(model, a, x[:2])
  sizes = perm_sizes(spec, a)
  assert sorted(sizes.values()) == [5, 6, 7]
  rng = np.random.default_rng(4)
  planted = {p: rng.permutation(n) for p, n in sizes.items()}
  b = apply_permutation(spec, planted, a)
  logits = jax.jit(lambda t, xb: apply_eval(model, t, xb))(a, x)  # one program, not per op
  y = np.argmax(np.asarray(logits), -1).astype(np.int32)
  return model, spec, a, b, planted, x, y


def _undo(planted):
  """The permutation that brings the planted copy back: `perm[i]` is the unit of B that
  holds A's unit i."""
  return {p: np.argsort(v) for p, v in planted.items()}


def test_the_distance_recovers_a_planted_permutation_from_a_wrong_start_on_a_batchnorm_net(
    bn_net):
  model, spec, a, b, planted, x, y = bn_net
  want = _undo(planted)
  # Start one transposition away in every group: the start is wrong everywhere.
  start = {p: v[np.r_[1, 0, 2:len(v)]] for p, v in want.items()}
  res = sinkhorn_matching(jax.random.key(0), model, spec, a, _stack(b), [start], steps=40,
                          lr=1.0, objective="distance", plan=CPU)
  for p in want:
    np.testing.assert_array_equal(res.perms[0][p], want[p])
  back = apply_permutation(spec, res.perms[0], b)
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(back)):
    np.testing.assert_allclose(u, v, atol=1e-6)


def test_a_planted_permutation_is_recovered_from_the_identity_on_an_mlp():
  spec = mlp_permutation_spec(2)
  model, a = random_params(jax.random.key(8), (8, 6), d_in=3, d_out=2)
  planted = {"P_0": np.random.default_rng(1).permutation(8),
             "P_1": np.random.default_rng(2).permutation(6)}
  b = apply_permutation(spec, planted, a)
  res = sinkhorn_matching(jax.random.key(0), model, spec, a, _stack(b),
                          [identity_permutation({"P_0": 8, "P_1": 6})], steps=50, lr=1.0,
                          objective="distance")
  for p, v in _undo(planted).items():
    np.testing.assert_array_equal(res.perms[0][p], v)


def test_the_accelerator_path_scans_the_steps_the_cpu_loops_from_the_host(bn_net):
  """On a conv net the CPU's plan loops over jitted steps from the host; the accelerator's
  (forced) runs them in one compiled scan. The numbers agree, and the projection batched
  by size agrees with the one matrix at a time it replaced."""
  model, spec, a, b, planted, x, y = bn_net
  assert CPU.host_loops(a) and not FORCED.host_loops(a)
  starts = [identity_permutation(perm_sizes(spec, a)), _undo(planted)]
  args = (jax.random.key(0), model, spec, a, _stack(b, b), starts, x, y)
  looped = sinkhorn_matching(*args, steps=4, lr=0.3, plan=CPU)
  scanned = sinkhorn_matching(*args, steps=4, lr=0.3, plan=FORCED)
  each = sinkhorn_matching(*args, steps=4, lr=0.3, plan=CPU, grouped=False)
  for other_res in (scanned, each):
    np.testing.assert_allclose(other_res.losses, looped.losses, rtol=1e-4, atol=1e-6)
    for p in looped.soft:
      np.testing.assert_allclose(other_res.soft[p], looped.soft[p], atol=1e-5)
  assert looped.losses.shape == (4, 2)


def test_a_data_objective_without_data_is_refused():
  spec = mlp_permutation_spec(1)
  model, a = random_params(jax.random.key(3), (4,), d_in=2, d_out=2)
  with pytest.raises(LmcError, match="learns on training data and was given none; pass x and y"):
    sinkhorn_matching(jax.random.key(0), model, spec, a, _stack(a),
                      [identity_permutation({"P_0": 4})], objective="expected")


def test_the_benchmark_times_every_row_and_the_batched_projection_agrees():
  from lmc_jax.analysis.sinkhorn_bench import bench_sinkhorn
  spec = mlp_permutation_spec(1)
  model, a = random_params(jax.random.key(3), (4,), d_in=2, d_out=2)
  _, b = random_params(jax.random.key(4), (4,), d_in=2, d_out=2)
  x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
  rows = bench_sinkhorn(model, spec, _stack(a, b), x, (x[:, 0] > 0).astype(np.int32),
                        data_steps=2, distance_steps=3, repeats=1, plan=CPU)
  assert [(r.name.split(",")[0], r.steps) for r in rows] == [
      ("weight matching", 0), ("sinkhorn expected", 2), ("sinkhorn expected", 2),
      ("sinkhorn distance", 3), ("sinkhorn distance", 3)]
  assert rows[1].max_abs_diff == 0.0 and rows[2].max_abs_diff < 1e-5
  assert rows[3].max_abs_diff == 0.0 and rows[4].max_abs_diff < 1e-4  # host against scan
  for r in rows:
    assert r.first_s >= r.compile_s >= 0 and r.run_s > 0 and r.first_cpu_s > 0
    assert r.estimate_s(50) >= r.compile_s


def test_the_distance_on_the_host_equals_the_compiled_scan_on_a_batchnorm_net(bn_net):
  """On a CPU the distance objective runs in numpy with its gradients written out
  (`sinkhorn_distance`); the accelerator's path differentiates the same objective under
  jit. Conv kernels, BatchNorm statistics and two models at once: the same losses and
  matrices."""
  model, spec, a, b, planted, x, y = bn_net
  starts = [identity_permutation(perm_sizes(spec, a)), _undo(planted)]
  args = (jax.random.key(0), model, spec, a, _stack(b, a), starts)
  host = sinkhorn_matching(*args, steps=5, lr=0.3, iters=7, objective="distance", plan=CPU)
  scanned = sinkhorn_matching(*args, steps=5, lr=0.3, iters=7, objective="distance",
                              plan=FORCED)
  assert host.losses.shape == scanned.losses.shape == (5, 2)
  np.testing.assert_allclose(host.losses, scanned.losses, rtol=1e-4, atol=1e-6)
  for p in scanned.soft:
    np.testing.assert_allclose(host.soft[p], scanned.soft[p], atol=1e-4)
  assert not np.allclose(host.losses[0], host.losses[-1])  # the steps moved


def test_the_written_out_gradients_are_jaxs():
  """`distance_and_grads` and `sinkhorn_backward` against `jax.grad` of the same loss, on
  a net with a group on two leaves and a leaf with two groups."""
  from lmc_jax.align.sinkhorn_distance import (
    distance_and_grads,
    leaves_for,
    sinkhorn_backward,
    sinkhorn_forward,
  )
  spec = mlp_permutation_spec(2)
  _, a = random_params(jax.random.key(3), (5, 4), d_in=3, d_out=2)
  _, b = random_params(jax.random.key(4), (5, 4), d_in=3, d_out=2)
  rng = np.random.default_rng(0)
  logits = {"P_0": rng.normal(size=(5, 5)), "P_1": rng.normal(size=(4, 4))}

  def loss(lg):
    soft = apply_soft_permutation(spec, project_all(lg, 6), b)
    d = sum(jnp.sum((u - v) ** 2) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                  jax.tree_util.tree_leaves(soft)))
    return d / sum(jnp.sum(u ** 2) for u in jax.tree_util.tree_leaves(a))

  with jax.default_matmul_precision("float32"):  # compiled once, not op by op
    want_value, want = jax.jit(jax.value_and_grad(loss))(
        {p: jax.device_put(v.astype(np.float32)) for p, v in logits.items()})
  forward = {p: sinkhorn_forward(v, 6) for p, v in logits.items()}
  value, grad_mats = distance_and_grads(spec, {p: f[0] for p, f in forward.items()},
                                        leaves_for(spec, a), leaves_for(spec, b))
  np.testing.assert_allclose(value, want_value, rtol=1e-5)
  for p, (mat, inputs) in forward.items():
    np.testing.assert_allclose(sinkhorn_backward(mat, inputs, grad_mats[p]), want[p],
                               rtol=1e-3, atol=1e-6)
