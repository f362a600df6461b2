"""Speed of the vectorised paths against the plain loops they replace, measured in one run.

Each function times both sides after compiling them (compile time is reported apart),
so the ratio is the steady-state speed-up a study sees. Each also counts the work it does:
`flops` (matrix products, 2 per multiply-add) and `bytes` (the memory traffic no
implementation avoids: for training the optimizer state read and written once per step,
for a sweep the endpoint parameters read and the mixed ones written once per network).
`floor_s` turns those into the least time the device could take, from its rates measured
by `device_rates`.

Every function times the paths the library runs under the plan it is given (default
`execution.default_plan()`): for convolutional zoos on one CPU device those are host loops,
one jitted call per model epoch, step or network (`ExecutionPlan.host_loops`), so there the
"vectorised" side is that loop and the baselines avoid XLA's slow convolution inside loops
too. FLOPs are counted from the traced network (`forward_flops`).
"""
from __future__ import annotations

import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.align.weight import align_pairs, align_zoo
from lmc_jax.analysis.product_rates import equations, product_seconds
from lmc_jax.config import ZooConfig
from lmc_jax.data.augment import augment_batch
from lmc_jax.data.datasets import Dataset, dataset_info
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.host_arrays import to_device
from lmc_jax.lmc.interpolation import all_pairs, default_alphas, interpolate, pair_sweep
from lmc_jax.lmc.loss_plane import plane_basis, plane_metrics
from lmc_jax.nn import native_conv
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.evaluation import metrics_one, to_batches
from lmc_jax.nn.forward import apply_eval, split_tree
from lmc_jax.nn.models import loss_and_correct, num_params
from lmc_jax.symmetry.derive import spec_for_config
from lmc_jax.tree_utils import take
from lmc_jax.zoo.training import (
  AUGMENT_STREAM,
  augment_shape,
  epoch_batches,
  epoch_keys,
  init_params,
  make_epoch,
  make_train_step,
  model_keys,
  models_per_chunk,
  steps_per_epoch,
  zoo_epoch_fn,
)


def _block(tree):
  return jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


def _best_of(fn, repeats: int = 5) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


class DeviceRates(NamedTuple):
  """A device's measured rates."""
  copy_bytes_per_s: float  # read plus write, in place
  matmul_flops_per_s: float  # float32 square matmul (the rate floors use: see `at`)
  bf16_matmul_flops_per_s: float  # bfloat16 inputs, float32 accumulation

  def at(self, precision: str) -> "DeviceRates":
    """These rates with the matmul rate of `precision` as the one floors use."""
    if precision == "bf16":
      return self._replace(matmul_flops_per_s=self.bf16_matmul_flops_per_s)
    return self


class TrainingTimes(NamedTuple):
  """`bench_training`: seconds of the zoo and of the loops it replaces, and its work."""
  zoo_s: float  # every model at once, as train_zoo runs it
  models_per_chunk: int
  baseline_models: int  # models the loops ran on (their seconds scaled to the zoo)
  products_s: Optional[float]  # a step's matrix products alone, over the run (None: convs)
  products_flops_per_s: Optional[float]
  loop_s: float  # a model at a time, a jitted call per epoch
  step_loop_s: float  # a model at a time, a jitted call per step (the study's style)
  host_loops: bool  # the zoo trains from host loops (`ExecutionPlan.host_loops`)
  compile_zoo_s: float
  compile_loop_s: float
  flops: float
  bytes: float


class SweepTimes(NamedTuple):
  """`bench_pair_sweep`: seconds of the sweep and of the loops it replaces, and its work."""
  sweep_s: float
  loop_s: float  # a jitted call per (pair, alpha)
  study_loop_s: float  # mixed per tensor, a jitted call per batch (the study's style)
  compile_sweep_s: float
  flops: float
  bytes: float
  pairs: int
  baseline_pairs: int  # pairs the loops ran on (their seconds scaled to all pairs)
  host_loops: bool  # the sweep runs from host loops
  max_abs_diff: float  # between the loops' losses and the sweep's


class PlaneTimes(NamedTuple):
  """`bench_plane`: seconds of the grid and of a loop over its points."""
  plane_s: float
  loop_s: float
  compile_s: float
  points: int
  flops: float
  bytes: float
  max_abs_diff: float


class AlignmentTimes(NamedTuple):
  """`bench_alignment`: seconds of weight matching, host against device."""
  host_s: float  # every pair, scipy, a pair at a time (scaled)
  device_s: float  # every pair at once, jitted
  compile_s: float
  pairs: int
  baseline_pairs: int
  max_rel_objective_diff: float  # host against device objectives
  reference_host_s: float  # every model to model 0, scipy, a model at a time
  reference_device_s: float  # every model to model 0 at once, jitted
  models: int


def device_rates(copy_mib: int = 256, matmul_n: int = 2048,
                 copy_passes: int = 8) -> DeviceRates:
  """The default device's measured copy bandwidth (bytes/s: read plus write of a
  `copy_mib` MiB float32 array, updated in place `copy_passes` times in one call, so no
  pass pays for fresh memory) and matmul rates (FLOP/s, `matmul_n` squared): float32, and
  bfloat16 inputs with float32 accumulation (`nn.precision`).

  The copy is in place because a fresh output array costs page faults on a CPU: writing
  256 MiB into new memory ran at 8.6 GB/s on a 2-core CPU whose in-place rate is 74 GB/s,
  and training, whose buffers are donated and reused, runs at the latter."""
  x = jnp.ones((copy_mib * 2 ** 18,), jnp.float32)
  scale = jax.jit(lambda a: jax.lax.fori_loop(0, copy_passes, lambda i, a: a * 1.0001, a),
                  donate_argnums=0)
  buffer = [scale(x)]

  def copy_in_place():
    buffer[0] = scale(buffer[0])
    buffer[0].block_until_ready()
  copy_s = _best_of(copy_in_place) / copy_passes
  a = jnp.ones((matmul_n, matmul_n), jnp.float32)
  mm = jax.jit(lambda u: u @ u)
  mm_s = _best_of(lambda: mm(a).block_until_ready())
  b = a.astype(jnp.bfloat16)
  mm16 = jax.jit(lambda u: jnp.matmul(u, u, preferred_element_type=jnp.float32))
  mm16_s = _best_of(lambda: mm16(b).block_until_ready())
  return DeviceRates(2 * x.nbytes / copy_s, 2 * matmul_n ** 3 / mm_s,
                     2 * matmul_n ** 3 / mm16_s)


def floor_s(flops: float, num_bytes: float, rates: DeviceRates) -> tuple:
  """(seconds, bound): the least time for `flops` and `num_bytes` at the device's rates,
  and which of the two bounds it ('compute' or 'memory')."""
  compute = flops / rates.matmul_flops_per_s
  memory = num_bytes / rates.copy_bytes_per_s
  return (compute, "compute") if compute >= memory else (memory, "memory")


def _jaxpr_flops(jaxpr) -> int:
  """Multiply-adds x 2 of the convolutions and matrix products of a jaxpr (and of the
  jaxprs nested in its equations, e.g. jitted calls)."""
  total = 0
  for eqn in equations(jaxpr):
    name = eqn.primitive.name
    if native_conv.calls_forward(name, eqn.params):
      # lmc_jax's compiled convolution: kernel (..., KH, KW, C, O), any model axes
      kernel = eqn.invars[1].aval.shape
      total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod(kernel[-4:-1]))
    elif name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape  # its input-feature axis is already per group
      per_output = np.prod(kernel) // kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
      total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(per_output)
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += (2 * int(np.prod(eqn.outvars[0].aval.shape))
                * int(np.prod([lhs[c] for c in contract])))
  return total


def forward_flops(model, tree_one, d_in: int) -> int:
  """Multiply-adds x 2 of one sample's forward pass through one network (evaluation
  mode): every convolution and matrix product of the traced network (for the study's MLP,
  `models.mlp_matmul_flops`)."""
  x = jnp.zeros((1, d_in), jnp.float32)
  return _jaxpr_flops(jax.make_jaxpr(lambda t, v: apply_eval(model, t, v))(tree_one, x).jaxpr)


def bench_training(config: ZooConfig, data: Dataset, baseline_models: Optional[int] = None,
                   plan: Optional[ExecutionPlan] = None) -> TrainingTimes:
  """Seconds to train `config.train.num_models` models for its epochs: all at once
  (jit of vmap of a scanned epoch) against one model at a time, both as a Python loop
  over models and epochs of the same jitted scanned epoch (`loop_s`) and as a Python loop
  over every mini-batch step, the way the study's PyTorch code ran (`step_loop_s`).
  Where the zoo trains from host loops (`host_loops` True: conv nets on one CPU device)
  both it and the per-epoch loop run each step as a jitted call (`make_epoch(...,
  host_steps=True)`), so the zoo side is itself a loop over models there.

  `baseline_models`: time the loops on this many models only and scale their seconds to
  the whole zoo (the models are alike, so time is linear in their number); for zoos
  whose loops would take too long to run whole. Reported as `baseline_models`."""
  model, train = model_for(config), config.train
  ids = list(range(train.num_models))
  init_keys, data_keys = model_keys(train.seed, ids)
  params = init_params(model, data.x_train.shape[1], init_keys)
  x, y = to_device(data.x_train), to_device(data.y_train)
  one_model = take(params, 0)
  augment = augment_shape(config, dataset_info(config.data))
  # The zoo side exactly as train_zoo runs it (chunks of models on a CPU; conv nets on one
  # CPU device from host loops). Its epoch donates its inputs, so it gets copies: the
  # initial state is reused by the loops below.
  plan = plan_or_default(plan)
  loop = plan.host_loops(one_model)
  chunk = 1 if loop else models_per_chunk(one_model, min(train.batch_size, len(data.y_train)),
                                          len(ids), plan)
  steps = steps_per_epoch(len(data.y_train), train.batch_size)
  tx, zoo_epoch = zoo_epoch_fn(model, config.optim, train.epochs * steps, train.batch_size,
                               augment, None if chunk >= len(ids) else chunk, loop)
  opt = jax.vmap(lambda t: tx.init(split_tree(t)[0]))(params)
  copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)
  key_data = jax.random.key_data(data_keys)
  # A model's epoch: one scan, jitted; where the zoo runs host loops, a jitted call per step
  # (a scanned convolution is what host loops avoid on a CPU).
  epoch = make_epoch(model, tx, train.batch_size, augment, host_steps=loop)
  one_epoch = epoch if loop else jax.jit(epoch)

  t = time.perf_counter()
  _block(zoo_epoch(copy(params), copy(opt), epoch_keys(key_data, 0), x, y))
  compile_zoo = time.perf_counter() - t
  p, o = copy(params), copy(opt)
  t = time.perf_counter()
  for e in range(train.epochs):
    p, o, _ = zoo_epoch(p, o, epoch_keys(key_data, e), x, y)
  _block(p)
  zoo_s = time.perf_counter() - t

  t = time.perf_counter()
  # Warm up with the loop's own argument construction (an eager fold_in compiles once).
  _block(one_epoch(take(params, 0), take(opt, 0), jax.random.fold_in(data_keys[0], 0), x, y))
  compile_one = time.perf_counter() - t
  looped = ids[:baseline_models or len(ids)]
  scale = len(ids) / len(looped)
  t = time.perf_counter()
  for k in looped:
    pk, ok = take(params, k), take(opt, k)
    for e in range(train.epochs):
      pk, ok, _ = one_epoch(pk, ok, jax.random.fold_in(data_keys[k], e), x, y)
    _block(pk)
  loop_s = (time.perf_counter() - t) * scale

  # The study's style: one model at a time, one Python call per mini-batch step (each
  # batch cropped and flipped as the zoo's are, where the config augments).
  step = jax.jit(make_train_step(model, tx))
  batches = jax.jit(epoch_batches, static_argnums=(1, 2))
  crop_flip = jax.jit(lambda key, s, xb: augment_batch(
      jax.random.fold_in(jax.random.fold_in(key, AUGMENT_STREAM), s), xb, augment))

  def batch(key, idx, s):
    xb = x[idx[s]]
    return xb if augment is None else crop_flip(key, s, xb)

  idx, w = batches(data_keys[0], len(data.y_train), train.batch_size)
  _block(step(take(params, 0), take(opt, 0), batch(data_keys[0], idx, 0), y[idx[0]], w[0]))
  t = time.perf_counter()
  for k in looped:
    pk, ok = take(params, k), take(opt, k)
    for e in range(train.epochs):
      key = jax.random.fold_in(data_keys[k], e)
      idx, w = batches(key, len(data.y_train), train.batch_size)
      for s in range(idx.shape[0]):
        pk, ok, _ = step(pk, ok, batch(key, idx, s), y[idx[s]], w[s])
    _block(pk)
  step_loop_s = (time.perf_counter() - t) * scale

  net_flops = forward_flops(model, one_model, data.x_train.shape[1])
  flops = 3 * net_flops * len(data.y_train) * train.epochs * len(ids)
  model_steps = steps * train.epochs * len(ids)
  state_words = 7 if config.optim.optimizer == "adamw" else 5  # params, grads and two moments
  num_bytes = 4 * state_words * num_params(split_tree(one_model)[0]) * model_steps
  # One step's matrix products timed alone, each at its own shape: a floor no schedule of
  # the step beats on this device (`analysis.product_rates`).
  b = min(train.batch_size, len(data.y_train))
  products = product_seconds(make_train_step(model, tx), one_model, take(opt, 0), x[:b], y[:b],
                             jnp.ones((b,), jnp.float32))
  return TrainingTimes(zoo_s, chunk, len(looped),
                       None if products is None else products.seconds * model_steps,
                       None if products is None else products.flops_per_s, loop_s,
                       step_loop_s, loop, compile_zoo, compile_one, flops, num_bytes)


def bench_pair_sweep(config: ZooConfig, data: Dataset, params_stack,
                     baseline_pairs: Optional[int] = None,
                     plan: Optional[ExecutionPlan] = None) -> SweepTimes:
  """Seconds to evaluate all pairs x 11 alphas on the test split: one jitted sweep against
  a Python loop over pairs and alphas calling a jitted single-network evaluation, and
  against the study's style of loop. `baseline_pairs`: run the loops on this many pairs
  and scale their time to all pairs.

  Conv nets: where `pair_sweep` runs host loops (one CPU device) the single-network call
  runs the test batches unrolled instead of scanned (`host_loops` True). Every side
  interpolates the whole variables dict, BatchNorm statistics included, and none resets
  them (`lmc.batchnorm`): the sweep is timed without the reset."""
  model = model_for(config)
  pairs = all_pairs(config.train.num_models)
  alphas = default_alphas()
  x, y = data.x_test, data.y_test

  t = time.perf_counter()
  plan = plan_or_default(plan)
  pair_sweep(model, params_stack, pairs[:1], x, y, alphas, plan=plan)  # the 1-chunk shape
  sweep_compile = time.perf_counter() - t
  pair_sweep(model, params_stack, pairs, x, y, alphas, plan=plan)  # compiles the full shape
  t = time.perf_counter()
  curves = pair_sweep(model, params_stack, pairs, x, y, alphas, plan=plan)
  sweep_s = time.perf_counter() - t

  batches = to_batches(x, y)
  members = [take(params_stack, k) for k in range(config.train.num_models)]
  unrolled = plan.host_loops(members[0])

  def network(pi, pj, a):
    mixed = interpolate(pi, pj, a)
    if not unrolled:
      return metrics_one(model, mixed, batches)
    sums = jnp.zeros(2)
    for b in range(batches.x.shape[0]):  # no loop around the convolutions
      loss, correct = loss_and_correct(apply_eval(model, mixed, batches.x[b]), batches.y[b])
      sums = sums + jnp.stack([loss @ batches.w[b], correct @ batches.w[b]])
    return sums / jnp.sum(batches.w)

  one = jax.jit(network)
  # Warm up with the loop's own argument types: a Python float would compile for a weak
  # type and the loop's numpy alphas compile again, inside the timing.
  _block(one(members[0], members[1], alphas[0]))
  looped = pairs[:baseline_pairs or len(pairs)]
  scale = len(pairs) / len(looped)
  loop = np.zeros((len(looped), len(alphas)))
  t = time.perf_counter()
  for p, (i, j) in enumerate(looped):
    for a, alpha in enumerate(alphas):
      loop[p, a] = float(one(members[i], members[j], alpha)[0])
  loop_s = (time.perf_counter() - t) * scale

  # The study's style: mix the weights tensor by tensor, then run the test set through the
  # network batch by batch (a DataLoader of 256) and sum the losses on the host.
  forward = jax.jit(lambda tree, xb, yb: loss_and_correct(apply_eval(model, tree, xb), yb))
  test_batches = [(x[s:s + 256], y[s:s + 256]) for s in range(0, len(y), 256)]
  mix = lambda u, v, alpha: (1 - alpha) * u + alpha * v
  _block(jax.tree_util.tree_map(lambda u, v: mix(u, v, alphas[0]), members[0], members[1]))
  for xb, yb in (test_batches[0], test_batches[-1]):  # a last, partial batch has its own shape
    _block(forward(members[0], xb, yb))
  study = np.zeros((len(looped), len(alphas)))
  t = time.perf_counter()
  for p, (i, j) in enumerate(looped):
    for a, alpha in enumerate(alphas):
      mixed = jax.tree_util.tree_map(lambda u, v: mix(u, v, alpha), members[i], members[j])
      total = 0.0
      for xb, yb in test_batches:
        total += float(jnp.sum(forward(mixed, xb, yb)[0]))
      study[p, a] = total / len(y)
  study_loop_s = (time.perf_counter() - t) * scale

  ours = curves.loss[:len(looped)]
  max_diff = float(max(np.max(np.abs(loop - ours)), np.max(np.abs(study - ours))))
  nets = len(pairs) * len(alphas)
  flops = forward_flops(model, members[0], x.shape[1]) * nets * len(y)
  return SweepTimes(sweep_s, loop_s, study_loop_s, sweep_compile, flops,
                    4 * 3 * num_params(members[0]) * nets, len(pairs), len(looped), unrolled,
                    max_diff)


def bench_plane(config: ZooConfig, data: Dataset, params_stack,
                resolution: int = 21) -> PlaneTimes:
  """Seconds for the loss on a `resolution` squared grid in the plane of models 0, 1, 2:
  one jitted chunked call against a loop calling a jitted evaluation per grid point."""
  model = model_for(config)
  on_device = jax.tree_util.tree_map(jnp.asarray, params_stack)
  basis = plane_basis(*(take(on_device, k) for k in range(3)))
  lo, hi = basis.corners.min(0), basis.corners.max(0)
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
  coords = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
  x, y = data.x_test, data.y_test
  t = time.perf_counter()
  plane_metrics(model, basis, coords, x, y)
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  grid, _ = plane_metrics(model, basis, coords, x, y)
  plane_s = time.perf_counter() - t

  batches = to_batches(x, y)
  point = jax.jit(lambda u, v: metrics_one(model, jax.tree_util.tree_map(
      lambda o, a, b: o + u * a + v * b, basis.origin, basis.e1, basis.e2), batches))
  point(*coords[0])  # the loop's argument types (numpy float32), so no compile in the loop
  loop = np.zeros(len(coords))
  t = time.perf_counter()
  for n, (u, v) in enumerate(coords):
    loop[n] = float(point(u, v)[0])
  loop_s = time.perf_counter() - t
  one = take(on_device, 0)
  return PlaneTimes(plane_s, loop_s, compile_s, len(coords),
                    forward_flops(model, one, x.shape[1]) * len(coords) * len(y),
                    4 * 4 * num_params(one) * len(coords), float(np.max(np.abs(loop - grid))))


def bench_alignment(config: ZooConfig, params_stack, max_iter: int = 50,
                    baseline_pairs: Optional[int] = None) -> AlignmentTimes:
  """Seconds to weight-match every pair of a zoo directly: one pair at a time with scipy
  on the host (on `baseline_pairs` pairs, scaled to all, if given) against all pairs at
  once with the jitted solver (compile reported apart); and every model to model 0."""
  spec = spec_for_config(config)
  pairs = all_pairs(config.train.num_models)
  key = jax.random.key(0)
  t = time.perf_counter()
  align_pairs(key, spec, params_stack, pairs[:1], max_iter, matcher="device")
  compile_s = time.perf_counter() - t
  align_pairs(key, spec, params_stack, pairs, max_iter, matcher="device")  # the full batch shape
  t = time.perf_counter()
  dev = align_pairs(key, spec, params_stack, pairs, max_iter, matcher="device")
  device_s = time.perf_counter() - t
  looped = pairs[:baseline_pairs or len(pairs)]
  t = time.perf_counter()
  host = align_pairs(key, spec, params_stack, looped, max_iter)
  host_s = (time.perf_counter() - t) * len(pairs) / len(looped)
  # Matching objective sum <theta_i, aligned theta_j> of each pair, host against device.
  first = [np.asarray(leaf, np.float64)[looped[:, 0]]
           for leaf in jax.tree_util.tree_leaves(params_stack)]
  objective = lambda tree: sum(
      (a * np.asarray(b, np.float64)[:len(looped)]).reshape(len(looped), -1).sum(1)
      for a, b in zip(first, jax.tree_util.tree_leaves(tree)))
  oh, od = objective(host), objective(dev)

  # Every model to model 0 (the study's star alignment): one model at a time on the host
  # against all models at once with the jitted solver.
  align_zoo(key, spec, params_stack, matcher="device")
  t = time.perf_counter()
  align_zoo(key, spec, params_stack, matcher="device")
  ref_device_s = time.perf_counter() - t
  t = time.perf_counter()
  align_zoo(key, spec, params_stack)
  ref_host_s = time.perf_counter() - t
  return AlignmentTimes(host_s, device_s, compile_s, len(pairs), len(looped),
                        float(np.max(np.abs(od - oh) / np.abs(oh))), ref_host_s, ref_device_s,
                        int(jax.tree_util.tree_leaves(params_stack)[0].shape[0]))
