import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmc_jax.config import default_config
from lmc_jax.data.datasets import load_dataset
from lmc_jax.errors import LmcError
from lmc_jax.execution import CPU_CHUNK_BYTES, plan_from_environment
from lmc_jax.nn import random_draws
from lmc_jax.nn.architectures import model_for
from lmc_jax.nn.evaluation import evaluate_zoo
from lmc_jax.nn.models import loss_and_correct
from lmc_jax.nn.optim import make_optimizer, make_schedule, optimizer_for
from lmc_jax.tree_utils import map_in_chunks
from lmc_jax.zoo import training
from lmc_jax.zoo.footprint import models_per_chunk
from lmc_jax.zoo.io import load_history, save_zoo
from lmc_jax.zoo.training import (
  epoch_batches,
  init_params,
  model_keys,
  steps_per_epoch,
  train_zoo,
  zoo_epoch_fn,
)
from tests.helpers.jaxprs import matrix_products

TINY = dict(hidden=(8,), num_models=3, epochs=3, batch_size=200)


def _train_alone_plain_loop(config, data, k, epoch_losses=None):
  """Model k trained by itself: a Python loop over single optimizer steps (each one jitted
  call), no vmap, no scan. Appends each epoch's mean batch loss to `epoch_losses` if given."""
  model = model_for(config)
  init_keys, data_keys = model_keys(config.train.seed, [k])
  params = jax.tree_util.tree_map(lambda v: np.asarray(v)[0], init_params(model, 2, init_keys))
  params = params["params"]
  steps = steps_per_epoch(len(data.y_train), config.train.batch_size)
  tx = optimizer_for(config.optim, config.train.epochs * steps)
  state = tx.init(params)
  x, y = np.asarray(data.x_train), np.asarray(data.y_train)

  def loss_fn(p, xb, yb, wb):
    loss, _ = loss_and_correct(model.apply({"params": p}, xb), yb)
    return jnp.sum(wb * loss) / jnp.sum(wb)

  @jax.jit
  def step(params, state, xb, yb, wb):
    loss, g = jax.value_and_grad(loss_fn)(params, xb, yb, wb)
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state, loss

  for e in range(config.train.epochs):
    idx, w = epoch_batches(jax.random.fold_in(data_keys[0], e), len(data.y_train),
                           config.train.batch_size)
    idx, w = np.asarray(idx), np.asarray(w)
    batch_losses = []
    for s in range(idx.shape[0]):
      params, state, loss = step(params, state, x[idx[s]], y[idx[s]], w[s])
      batch_losses.append(float(loss))
    if epoch_losses is not None:
      epoch_losses.append(np.mean(batch_losses))
  return params


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("sgd", "onecycle")])
def test_vmapped_zoo_equals_models_trained_alone(optimizer, schedule):
  # 512 samples, batch 200: the last batch of every epoch is partial.
  config = default_config("moons", optimizer=optimizer, schedule=schedule, lr=0.05, **TINY)
  data = load_dataset(config)
  zoo = train_zoo(config, data, log=None)
  for k in range(config.train.num_models):
    alone = _train_alone_plain_loop(config, data, k)
    for got, want in zip(jax.tree_util.tree_leaves(zoo.params), jax.tree_util.tree_leaves(alone)):
      np.testing.assert_allclose(np.asarray(got)[k], want, rtol=2e-4, atol=2e-5)


def test_history_records_each_epochs_loss_as_a_plain_loop_sees_it(tmp_path):
  config = default_config("moons", **TINY)
  data = load_dataset(config)
  zoo = train_zoo(config, data, log=None, eval_every=2)
  h = zoo.history
  assert h["train_loss"].shape == (3, 3) and h["eval_epoch"].tolist() == [2, 3]
  for k in range(config.train.num_models):
    plain = []
    _train_alone_plain_loop(config, data, k, plain)
    np.testing.assert_allclose(h["train_loss"][:, k], plain, rtol=1e-4)
  # The last evaluation is the trained zoo's own test metrics.
  np.testing.assert_allclose(h["test_loss"][-1], [m["test_loss"] for m in zoo.metrics], rtol=1e-5)
  np.testing.assert_allclose(h["test_acc"][-1], [m["test_acc"] for m in zoo.metrics])
  # Saved beside the zoo, readable with numpy alone.
  save_zoo(tmp_path / "z", config, zoo.params, zoo.metrics, history=h)
  with np.load(tmp_path / "z" / "history.npz") as f:
    np.testing.assert_array_equal(f["train_loss"], h["train_loss"])
  assert load_history(tmp_path / "z").keys() == h.keys()
  with pytest.raises(LmcError, match="--eval_every must be >= 0"):
    train_zoo(config, data, log=None, eval_every=-1)


def test_same_seed_same_zoo_bit_for_bit_and_subsets_agree():
  config = default_config("moons", **TINY)
  data = load_dataset(config)
  a, b = train_zoo(config, data, log=None), train_zoo(config, data, log=None)
  for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_array_equal(u, v)
  # Model 2 is the same network whether trained in the zoo or alone.
  alone = train_zoo(config, data, model_ids=[2], log=None)
  for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(alone.params)):
    np.testing.assert_allclose(u[2], v[0], rtol=1e-5, atol=1e-6)
  # Different models of a zoo differ, and another seed gives another zoo.
  k0 = np.asarray(a.params["params"]["Dense_0"]["kernel"])
  assert not np.allclose(k0[0], k0[1])
  c = train_zoo(config.replace(seed=1), data, log=None)
  assert not np.allclose(k0, np.asarray(c.params["params"]["Dense_0"]["kernel"]))


def test_training_learns_moons_and_metrics_match_evaluation():
  config = default_config("moons", hidden=(32,), num_models=4, epochs=30)
  data = load_dataset(config)
  zoo = train_zoo(config, data, log=None)
  accs = [m["test_acc"] for m in zoo.metrics]
  assert min(accs) > 0.95
  loss, acc = evaluate_zoo(model_for(config), zoo.params, data.x_test, data.y_test, batch_size=100)
  np.testing.assert_allclose(loss, [m["test_loss"] for m in zoo.metrics], rtol=1e-5)
  np.testing.assert_allclose(acc, accs, rtol=1e-6)
  assert not any(m["diverged"] for m in zoo.metrics)


def test_divergence_is_marked():
  config = default_config("moons", optimizer="sgd", schedule="constant", lr=1e30, momentum=0.0,
                          weight_decay=0.0, **TINY)
  zoo = train_zoo(config, load_dataset(config), log=None)
  assert all(m["diverged"] for m in zoo.metrics)


def test_epoch_batches_visit_every_sample_once():
  idx, w = epoch_batches(jax.random.key(0), 10, 4)
  assert idx.shape == (3, 4)
  real = np.asarray(idx)[np.asarray(w) > 0]
  assert sorted(real.tolist()) == list(range(10))
  assert np.asarray(w).sum() == 10


def _torch_reference(name, steps, lr, wd, grad_fn, w0):
  """PyTorch's documented update rules for one parameter vector, in plain numpy."""
  w = w0.copy()
  m = np.zeros_like(w)
  v = np.zeros_like(w)
  buf = None
  for t in range(1, steps + 1):
    g = grad_fn(w)
    if name == "adamw":
      w = w * (1 - lr * wd)
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g * g
      w = w - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    elif name == "sgd":
      g = g + wd * w
      buf = g if buf is None else 0.9 * buf + g
      w = w - lr * buf
    elif name == "rmsprop":
      g = g + wd * w
      v = 0.99 * v + 0.01 * g * g
      w = w - lr * g / (np.sqrt(v) + 1e-8)
    elif name == "adagrad":
      g = g + wd * w
      v = v + g * g
      w = w - lr * g / (np.sqrt(v) + 1e-10)
  return w


@pytest.mark.parametrize("name", ["adamw", "sgd", "rmsprop", "adagrad"])
def test_optimizers_follow_pytorch_update_rules(name):
  target = np.array([1.0, -2.0, 3.0])
  grad_fn = lambda w: 2 * (w - target)
  w0 = np.array([0.5, 0.5, 0.5])
  tx = make_optimizer(name, optax.constant_schedule(0.01), weight_decay=0.1, momentum=0.9)
  w = jax.device_put(w0.astype(np.float32))  # jnp.asarray compiles per shape
  state = tx.init(w)

  @jax.jit
  def step(grad, state, w):
    updates, state = tx.update(grad, state, w)
    return optax.apply_updates(w, updates), state
  for _ in range(20):
    w, state = step(grad_fn(np.asarray(w, np.float64)).astype(np.float32), state, w)
  np.testing.assert_allclose(w, _torch_reference(name, 20, 0.01, 0.1, grad_fn, w0), rtol=1e-4)


def test_schedules():
  cos = jax.jit(make_schedule("cosine", 0.1, 100))  # one program per schedule
  assert float(cos(0)) == pytest.approx(0.1) and float(cos(50)) == pytest.approx(0.05)
  assert float(cos(100)) == pytest.approx(0.0, abs=1e-9)
  one = jax.jit(make_schedule("onecycle", 0.01, 100, peak_lr=0.1))
  assert float(one(0)) == pytest.approx(0.1 / 25) and float(one(30)) == pytest.approx(0.1)
  assert float(one(100)) == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)
  assert float(jax.jit(make_schedule("constant", 0.3, 10))(7)) == pytest.approx(0.3)


def test_epochs_and_seeds_reuse_one_compilation(monkeypatch):
  """Counted in the jitted epoch's own cache (`_cache_size()`), not in JAX's log wording."""
  data = load_dataset(default_config("moons"))
  zoo_epoch_fn.cache_clear()  # a new jitted epoch: every entry in its cache is from this test
  runs, entries = [], []  # the jitted epoch of each zoo; its cache entries after each epoch

  def spy(*args, **kwargs):
    tx, run = zoo_epoch_fn(*args, **kwargs)
    runs.append(run)

    def counted(*epoch_args):
      out = run(*epoch_args)
      entries.append(run._cache_size())
      return out
    return tx, counted

  monkeypatch.setattr(training, "zoo_epoch_fn", spy)
  config = default_config("moons", hidden=(5,), num_models=3, epochs=4, batch_size=200)
  train_zoo(config, data, log=None)
  assert zoo_epoch_fn.cache_info().misses == 1 and len(entries) == 4
  # One compile for all 4 epochs. Epoch 1's inputs come from device_put, later ones from
  # the previous epoch, and the dispatch cache may key them apart (a second entry for the
  # same executable: JAX logs one compile); after that no epoch adds one. A recompile per
  # epoch (a static argument or an input's shape, dtype or sharding changing with the
  # epoch) would give 1, 2, 3, 4 entries.
  assert entries[0] == 1 and entries[1] <= 2 and entries[1:] == [entries[1]] * 3
  train_zoo(config.replace(seed=7), data, log=None)  # another zoo of the same shape
  info = zoo_epoch_fn.cache_info()
  assert (info.hits, info.misses) == (1, 1) and len(runs) == 2 and runs[1] is runs[0]
  assert entries[4:] == [entries[3]] * 4  # no new compilation


def test_chunks_of_models_train_like_one_vmap():
  config = default_config("moons", hidden=(6,), num_models=5, epochs=2, batch_size=200)
  data = load_dataset(config)
  model = model_for(config)
  steps = steps_per_epoch(len(data.y_train), config.train.batch_size)
  init_keys, data_keys = model_keys(config.train.seed, range(5))
  results = []
  # 2 and 4 do not divide 5: the rest runs as its own chunk (of one model, unbatched, for
  # 4); 1 trains one model at a time with no vmap.
  for chunk in (None, 2, 4, 1):
    tx, run = zoo_epoch_fn(model, config.optim, config.train.epochs * steps,
                           config.train.batch_size, None, chunk)
    params = init_params(model, 2, init_keys)
    state = jax.vmap(lambda t: tx.init(t["params"]))(params)
    params, state, _ = run(params, state, data_keys, jax.device_put(data.x_train),
                           jax.device_put(data.y_train))
    results.append(params)
  for other in results[1:]:
    for a, b in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(other)):
      np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("n, chunk", [(7, 1), (7, 2), (7, 3), (7, 7), (7, 9), (1, 1), (6, 3)])
def test_map_in_chunks_is_vmap_and_never_batches_one_item(n, chunk):
  f = lambda t: {"y": jnp.tanh(t["x"] @ t["w"]), "s": jnp.sum(t["x"])}
  xs = {"x": random_draws.normal(jax.random.key(0), (n, 3, 4)),
        "w": random_draws.normal(jax.random.key(1), (n, 4, 2))}
  out = jax.jit(lambda xs: map_in_chunks(f, xs, chunk))(xs)
  host = {k: np.asarray(v) for k, v in xs.items()}
  expected = {k: np.stack([np.asarray(f({"x": host["x"][i], "w": host["w"][i]})[k])
                           for i in range(n)])
              for k in ("y", "s")}  # a plain loop, one item at a time
  for k in expected:
    np.testing.assert_allclose(out[k], expected[k], rtol=1e-6, atol=1e-6)
  sizes = [eqn.invars[0].aval.shape[d] for eqn in matrix_products(
      lambda xs: map_in_chunks(f, xs, chunk), xs) for d in eqn.params["dimension_numbers"][1][0]]
  assert 1 not in sizes  # a vmap of one item (slow on a CPU) never appears
  assert sorted(set(sizes)) == sorted({c for c in (min(chunk, n), n % min(chunk, n)) if c > 1})


def test_cpu_chunks_are_even_and_a_model_too_large_for_them_trains_alone():
  cpu = plan_from_environment(environ={})
  small = {"k": jax.ShapeDtypeStruct((2, 16), jnp.float32)}  # 16 units: ~66 KB at batch 1000
  per_model = 4 * 1000 * 16 + 4 * 32
  fits = CPU_CHUNK_BYTES // per_model
  assert models_per_chunk(small, 1000, fits, cpu) == fits  # all fit: one chunk
  assert models_per_chunk(small, 1000, fits + 1, cpu) == -(-(fits + 1) // 2)  # two even chunks
  big = {"k": jax.ShapeDtypeStruct((784, 2048), jnp.float32)}
  assert models_per_chunk(big, 256, 10, cpu) == 1
  two = cpu.with_devices(jax.devices() * 2)
  assert models_per_chunk(big, 256, 10, two) == 10  # several devices: one vmap
