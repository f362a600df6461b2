"""One-cycle schedules and OneCycleLR's cycled momentum against torch's rules, written out
here in plain Python from torch.optim.lr_scheduler.OneCycleLR and torch.optim.Adam/SGD/
RMSprop (torch is not a dependency)."""
import math

import jax
import numpy as np
import optax
import pytest

from lmc_jax.config import default_config
from lmc_jax.errors import LmcError
from lmc_jax.nn.optim import make_optimizer, make_schedule, onecycle_momentum, optimizer_for


def torch_onecycle(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0,
                   final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95):
  """(lr, momentum) of OneCycleLR.get_lr at `step` (= scheduler.last_epoch), two phases."""
  initial_lr = max_lr / div_factor
  min_lr = initial_lr / final_div_factor
  phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr, max_momentum,
             base_momentum),
            (total_steps - 1, max_lr, min_lr, base_momentum, max_momentum)]
  anneal = lambda start, end, pct: end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
  start_step = 0.0
  for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
    if step <= end_step or i == len(phases) - 1:
      pct = (step - start_step) / (end_step - start_step)
      return anneal(lr0, lr1, pct), anneal(m0, m1, pct)
    start_step = end_step


def values(schedule, steps):
  return np.asarray(jax.vmap(schedule)(jax.device_put(steps.astype(np.int32))), np.float64)


@pytest.mark.parametrize("total", [1, 2, 3, 7, 100, 60 * 235])
def test_onecycle_torch_and_momentum_follow_torch(total):
  steps = np.arange(total)
  want_lr, want_m = np.array([torch_onecycle(int(k), total, 0.1) for k in steps]).T
  np.testing.assert_allclose(values(make_schedule("onecycle_torch", 0.01, total, 0.1), steps),
                             want_lr, rtol=1e-5)
  np.testing.assert_allclose(values(onecycle_momentum(total), steps), want_m, rtol=1e-6)
  if total >= 100:
    peak = int(0.3 * total) - 1  # torch's peak: step pct_start * total - 1
    assert int(values(make_schedule("onecycle_torch", 0.01, total, 0.1), steps).argmax()) == peak
    m = values(onecycle_momentum(total), steps)
    assert m[0] == pytest.approx(0.95, abs=1e-6) and m[peak] == pytest.approx(0.85, abs=1e-6)
    assert m[-1] == pytest.approx(0.95, abs=1e-6)


def test_optax_onecycle_is_torchs_one_step_later():
  """'onecycle' stays optax's rule (zoos already trained keep their schedule); over MNIST's
  60 x 235 steps it differs from torch's by at most ~2.1e-4 of the peak (step 2731, mid
  warm-up), its peak is one step later (4230, torch 4229) and its last value 4.025e-7
  (float64) against torch's min_lr 4e-7."""
  total, peak = 60 * 235, 0.1
  steps = np.arange(total)
  optax_lr = values(make_schedule("onecycle", 0.01, total, peak), steps)
  torch_lr = np.array([torch_onecycle(int(k), total, peak)[0] for k in steps])
  diff = np.abs(optax_lr - torch_lr)
  assert 1e-4 * peak < diff.max() < 3e-4 * peak
  assert 2500 < int(diff.argmax()) < 3000  # 2731 in float64; the maximum is flat
  assert int(optax_lr.argmax()) == 4230 and int(torch_lr.argmax()) == 4229
  assert optax_lr[-1] == pytest.approx(4.025e-7, rel=2e-2)  # float32 cancellation in optax
  assert torch_lr[-1] == pytest.approx(peak / 25 / 1e4)


def _torch_reference(name, steps, total, peak, wd, grad_fn, w0, bias_correction="current"):
  """torch.optim.<name> under OneCycleLR(max_lr=peak, total_steps=total), cycle_momentum on:
  step k uses lr_k and beta1_k / momentum_k; Adam's bias correction is 1 - beta1_k ** t."""
  w = np.array(w0, np.float64)
  m = np.zeros_like(w)
  v = np.zeros_like(w)
  buf = None
  for k in range(steps):
    lr, mom = torch_onecycle(k, total, peak)
    g = grad_fn(w)
    t = k + 1
    if name == "adamw":
      w = w * (1 - lr * wd)
      m = mom * m + (1 - mom) * g
      v = 0.999 * v + 0.001 * g * g
      b1_for_bc = mom if bias_correction == "current" else 0.9
      denom = np.sqrt(v) / math.sqrt(1 - 0.999 ** t) + 1e-8
      w = w - lr / (1 - b1_for_bc ** t) * m / denom
    elif name == "sgd":
      g = g + wd * w
      buf = g.copy() if buf is None else mom * buf + g
      w = w - lr * buf
    elif name == "rmsprop":
      g = g + wd * w
      v = 0.99 * v + 0.01 * g * g
      step = g / (np.sqrt(v) + 1e-8)
      buf = step if buf is None else mom * buf + step  # torch's buffer starts at zero
      w = w - lr * buf
  return w


def _run(tx, grad_fn, w0, steps):
  w = jax.device_put(w0.astype(np.float32))  # jnp.asarray compiles per shape
  state = tx.init(w)

  @jax.jit  # a step is one program, not one per optimizer op
  def step(grad, state, w):
    updates, state = tx.update(grad, state, w)
    return optax.apply_updates(w, updates), state
  for _ in range(steps):
    w, state = step(grad_fn(np.asarray(w, np.float64)).astype(np.float32), state, w)
  return np.asarray(w, np.float64)


@pytest.mark.parametrize("name", ["adamw", "sgd", "rmsprop"])
def test_cycled_momentum_follows_torch(name):
  target = np.array([1.0, -2.0, 3.0])
  grad_fn = lambda w: 2 * (w - target)
  w0 = np.array([0.5, 0.5, 0.5])
  total, peak, wd = 40, 0.05, 0.1
  tx = make_optimizer(name, make_schedule("onecycle_torch", peak, total), weight_decay=wd,
                      momentum=0.0, momentum_schedule=onecycle_momentum(total))
  got = _run(tx, grad_fn, w0, total)
  want = _torch_reference(name, total, total, peak, wd, grad_fn, w0)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert np.abs(want - w0).min() > 1e-2  # the run moved every weight
  if name == "adamw":  # bias correction with a constant 0.9 is measurably another rule
    other = _torch_reference(name, total, total, peak, wd, grad_fn, w0, bias_correction="0.9")
    assert np.abs(other - want).max() > 1e-2 * np.abs(want - w0).max()


def test_constant_beta1_schedule_is_plain_adamw():
  schedule = make_schedule("cosine", 0.01, 30)
  grad_fn = lambda w: 2 * (w - np.array([1.0, -2.0, 3.0]))
  w0 = np.array([0.5, 0.5, 0.5])
  plain = _run(make_optimizer("adamw", schedule, 0.1), grad_fn, w0, 30)
  scheduled = _run(make_optimizer("adamw", schedule, 0.1,
                                  momentum_schedule=optax.constant_schedule(0.9)),
                   grad_fn, w0, 30)
  np.testing.assert_allclose(scheduled, plain, rtol=1e-5)


def test_optimizer_for_cycles_momentum_over_the_whole_run():
  config = default_config("moons", hidden=(4,), epochs=3, schedule="onecycle_torch", lr=0.05,
                          weight_decay=0.1, cycle_momentum=True)
  grad_fn = lambda w: 2 * (w - np.array([1.0, -2.0, 3.0]))
  w0 = np.array([0.5, 0.5, 0.5])
  got = _run(optimizer_for(config.optim, 15), grad_fn, w0, 15)
  np.testing.assert_allclose(got, _torch_reference("adamw", 15, 15, 0.05, 0.1, grad_fn, w0),
                             rtol=1e-4)
  # Off (the default): today's optimizer, constant beta1.
  plain = _run(optimizer_for(config.optim.replace(cycle_momentum=False), 15), grad_fn, w0, 15)
  assert np.abs(plain - got).max() > 1e-4


def test_cycle_momentum_refusals():
  with pytest.raises(LmcError, match="adagrad"):
    make_optimizer("adagrad", optax.constant_schedule(0.1),
                   momentum_schedule=onecycle_momentum(10))
  config = default_config("moons", hidden=(4,))
  with pytest.raises(LmcError, match="one-cycle"):  # replace() skips validate()
    optimizer_for(config.optim.replace(cycle_momentum=True), 5)
