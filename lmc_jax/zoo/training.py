"""Training a zoo: N models at once, `jit(vmap(epoch))`, each epoch one `lax.scan`.

Keys: `jax.random.key(seed)` splits once into an init key and a data key; model k gets
`fold_in(init_key, k)` and `fold_in(data_key, k)`, and its epoch e order comes from
`fold_in(fold_in(data_key, k), e)`. So model k is the same network whether it is trained
in a zoo of 50 or alone, and a seed gives the same zoo bit for bit on one machine.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmc_jax import host_arrays
from lmc_jax.config import ConfigError, OptimConfig, ZooConfig
from lmc_jax.crash_points import crash_point
from lmc_jax.data.augment import augment_batch
from lmc_jax.data.datasets import Dataset, DatasetInfo, dataset_info
from lmc_jax.errors import LmcError
from lmc_jax.execution import ExecutionPlan, map_items, plan_or_default, run_steps
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.architectures import build_network
from lmc_jax.nn.evaluation import chance_accuracy, evaluate_zoo, is_collapsed
from lmc_jax.nn.forward import apply_train, join_tree, split_tree
from lmc_jax.nn.models import abstract_variables, init_variables, loss_and_correct
from lmc_jax.nn.optim import optimizer_for
from lmc_jax.records import ModelMetrics
from lmc_jax.stopping import deferred, note_saved, stop_asked, stop_if_asked
from lmc_jax.tree_utils import fold_in_each, stack
from lmc_jax.zoo.checkpoint import Checkpointer, TrainState
from lmc_jax.zoo.footprint import check_fits, models_per_chunk
from lmc_jax.zoo.progress import (
  Progress,
  StepMarks,
  deliver_mark,
  mark_interval,
  mark_step,
  receiving,
)
from lmc_jax.zoo.sharding import model_mesh, padded_size, replicate, split_models, to_host


class Zoo(NamedTuple):
  """A trained zoo: `variables` is the whole Flax variables dict of every model, stacked
  with the model on axis 0."""
  config: ZooConfig
  variables: dict
  metrics: list  # one `records.ModelMetrics` per model
  history: Optional[dict] = None  # per epoch: see `train_zoo`

  @property
  def params(self) -> dict:
    """The stacked variables dict (the name earlier versions gave it)."""
    return self.variables


def model_keys(seed: int, model_ids: Sequence[int]):
  """(init_keys, data_keys), each a key array `(len(model_ids),)`."""
  init_key, data_key = jax.random.split(jax.random.key(seed))
  return fold_in_each(init_key, model_ids), fold_in_each(data_key, model_ids)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
  return -(-n_train // min(batch_size, n_train))


def epoch_batches(key, n_train: int, batch_size: int):
  """One epoch's shuffled order: indices `(steps, b)` int32 and weights `(steps, b)`.

  The last batch is partial when `b` does not divide `n_train` (as a PyTorch DataLoader
  keeps it); it is padded with index 0 at weight 0.
  """
  b = min(batch_size, n_train)
  steps = steps_per_epoch(n_train, b)
  order = jax.random.permutation(key, n_train)
  pad = steps * b - n_train
  idx = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)]).reshape(steps, b)
  w = jnp.concatenate([jnp.ones(n_train), jnp.zeros(pad)]).reshape(steps, b)
  return idx.astype(jnp.int32), w.astype(jnp.float32)


def make_train_step(model, tx):
  """One optimizer step on one batch: (tree, opt_state, x, y, w) -> (..., loss).

  `tree` is one model's variables dict; the optimizer sees its params only, and state
  collections (BatchNorm statistics) follow the training pass.
  """
  def loss_fn(params, state, x, y, w):
    logits, state = apply_train(model, params, state, x)
    loss, _ = loss_and_correct(logits, y)
    return jnp.sum(w * loss) / jnp.sum(w), state

  def step(tree, opt_state, x, y, w):
    params, state = split_tree(tree)
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y, w)
    updates, opt_state = tx.update(grads, opt_state, params)
    return join_tree(optax.apply_updates(params, updates), state, tree), opt_state, loss
  return step


# Augmentation keys are folded from the epoch key with this, so the data order (drawn from
# the epoch key itself) is the same with and without augmentation.
AUGMENT_STREAM = 1


_jitted_epoch_batches = jax.jit(epoch_batches, static_argnums=(1, 2))


def make_epoch(model, tx, batch_size: int, augment_shape: Optional[tuple] = None,
               host_steps: bool = False):
  """One model's epoch as one `lax.scan` over its shuffled batches; with `augment_shape`
  (H, W, C) each batch is cropped and flipped (`data.augment`) with a key per step. With
  `host_steps` the steps are jitted calls from a Python loop instead of a scan (see
  `execution.ExecutionPlan.host_loops`); the arithmetic is the same.

  Returns epoch(tree, opt_state, key, x, y) -> (tree, opt_state, mean_batch_loss).
  """
  step = make_train_step(model, tx)
  batches_of = _jitted_epoch_batches if host_steps else epoch_batches

  def body(carry, batch, x, y, aug_key):
    params, opt_state = carry
    bi, bw, t = batch
    xb = x[bi]
    if augment_shape is not None:
      xb = augment_batch(jax.random.fold_in(aug_key, t), xb, augment_shape)
    params, opt_state, loss = step(params, opt_state, xb, y[bi], bw)
    return (params, opt_state), loss

  def epoch(params, opt_state, key, x, y):
    idx, w = batches_of(key, x.shape[0], batch_size)
    aug_key = jax.random.fold_in(key, AUGMENT_STREAM)
    steps = jnp.arange(idx.shape[0], dtype=jnp.int32)
    interval = mark_interval(idx.shape[0])  # progress inside a long epoch (`zoo.progress`)
    stepped = body
    if interval and not host_steps:
      def stepped(carry, batch, *consts):
        carry, loss = body(carry, batch, *consts)
        mark_step(batch[2], interval)
        return carry, loss
    on_step = (lambda k: k % interval == 0 and deliver_mark(k)) if interval else None
    (params, opt_state), losses = run_steps(stepped, (params, opt_state), (idx, w, steps), x,
                                            y, aug_key, from_host=host_steps, donate=True,
                                            on_step=on_step)
    return params, opt_state, jnp.mean(losses)
  return epoch


def init_params(model, d_in: int, init_keys):
  """Stacked initial variables dicts `(len(init_keys), ...)`: each model's drawn on its own,
  then stacked, the same bits as a `vmap` over the keys gives. One model at a time, each
  initializer's draw compiles once per size class and dtype for every zoo
  (`nn.random_draws`); an eager `vmap` compiled it again for every zoo size, and a cut for
  every leaf shape (a sequence of ten zoos' inits, MLPs to a ViT: 11 -> 6 s on a 2-core CPU)."""
  return stack([init_variables(model, k, d_in) for k in init_keys], host_arrays.stack)


def augment_shape(config: ZooConfig, info: DatasetInfo) -> Optional[tuple]:
  """(H, W, C) of the images where `config.train` crops and flips its batches, else None."""
  if config.train.augment == "none":
    return None
  if info.image_shape is None:
    raise ConfigError("train.augment", f"is {config.train.augment}, which needs images, and "
                      f"{info.name} has none; use none")
  return tuple(info.image_shape)


@functools.lru_cache(maxsize=32)
def zoo_epoch_fn(model, optim: OptimConfig, total_steps: int, batch_size: int,
                 augment: Optional[tuple] = None, chunk: Optional[int] = None,
                 loop: bool = False):
  """The zoo epoch `(params, opt_state, keys, x, y) -> (params, opt_state, losses)` over a
  stack of models, jitted, with the incoming params and optimizer state donated.

  `chunk=None` vmaps over all models; otherwise chunks of `chunk` models run one after
  another, each chunk vmapped, and `chunk=1` one model at a time with no vmap (same
  results, a smaller working set; `tree_utils.map_in_chunks`); `loop` runs the models one
  after another from the host, each epoch's steps a jitted call each
  (`execution.ExecutionPlan.host_loops`). The
  optimizer's schedule spans `total_steps`; `augment` is the (H, W, C) of crop-and-flip
  augmentation or None. Cached on everything that shapes the computation but not on the
  seed or the zoo size, so epochs, seeds and zoos of the same architecture and optimizer
  reuse one compilation per input shape.
  """
  tx = optimizer_for(optim, total_steps)
  epoch = make_epoch(model, tx, batch_size, augment, host_steps=loop)

  def run(params, opt_state, keys, x, y):
    return map_items(lambda m, x, y: epoch(*m, x, y), (params, opt_state, keys), x, y,
                     chunk=chunk, from_host=loop)
  return tx, (run if loop else jax.jit(run, donate_argnums=(0, 1)))


@jax.jit
def epoch_keys(key_data, epoch):
  """Epoch keys `fold_in(data_key_k, epoch)` from the raw data of the models' data keys."""
  return jax.vmap(jax.random.fold_in, (0, None))(jax.random.wrap_key_data(key_data), epoch)


def train_zoo(config: ZooConfig, dataset: Dataset, model_ids: Optional[Sequence[int]] = None,
              log: Optional[Callable[[str], None]] = logging.info,
              devices: Optional[Sequence] = None, label: Optional[str] = None,
              log_every: float = 5.0, eval_every: int = 0,
              checkpoint: Optional[Checkpointer] = None,
              plan: Optional[ExecutionPlan] = None) -> Zoo:
  """Trains models `model_ids` (default: all `config.num_models`) of the zoo `config`.

  All models train at once, their axis split over `devices` (default: every visible
  device; see `lmc_jax.zoo.sharding`); the whole dataset is on every device. Logs through
  `log` a line to start and then, at most every `log_every` seconds and after the last
  epoch, the epoch, the median training loss over the zoo, the time so far and left;
  `label` names the zoo in those lines (default: dataset and hidden widths).

  `Zoo.history`: "train_loss" `(epochs, N)`, each model's mean loss over the batches of
  each epoch; with `eval_every` k > 0 also "eval_epoch" `(K,)` (every k-th epoch and the
  last) and "test_loss", "test_acc" `(K, N)` on the test split after those epochs.

  With `checkpoint`, training starts from its saved state where it has one for this run
  and saves the state whenever it is due (see `zoo.checkpoint`); the result is the same.
  """
  if eval_every < 0:
    raise LmcError(f"--eval_every must be >= 0 (0: no test metrics during training), got "
                   f"{eval_every}.")
  config.validate()
  train = config.train
  ids = list(range(train.num_models)) if model_ids is None else list(model_ids)
  plan = plan_or_default(plan)
  if devices is not None:
    plan = plan.with_devices(devices)
  mesh = model_mesh(plan.devices)
  # Pad to a multiple of the device count with models that are trained and dropped.
  extra = padded_size(len(ids), mesh) - len(ids)
  run_ids = ids + [max(ids) + 1 + k for k in range(extra)]
  info = dataset_info(config.data)
  model = build_network(config.model, info)
  steps = steps_per_epoch(len(dataset.y_train), train.batch_size)
  init_keys, data_keys = model_keys(train.seed, run_ids)
  d_in = dataset.x_train.shape[1]
  one = abstract_variables(model, d_in)  # shapes only
  chunk = models_per_chunk(one, min(train.batch_size, len(dataset.y_train)), len(run_ids), plan)
  loop = plan.host_loops(one)
  chunk = 1 if loop else chunk
  check_fits(config.replace(num_models=len(run_ids)), plan, chunk)
  params = init_params(model, d_in, init_keys)
  tx, run_epoch = zoo_epoch_fn(model, config.optim, train.epochs * steps, train.batch_size,
                               augment_shape(config, info),
                               None if chunk >= len(run_ids) else chunk, loop)
  # One compiled program per zoo: eager, the vmap compiled an op per leaf shape and zoo size.
  opt_state = jax.jit(jax.vmap(lambda t: tx.init(split_tree(t)[0])))(params)
  start = TrainState(0, params, opt_state, np.zeros((0, len(run_ids)), np.float32),
                     np.zeros((0,), np.int64), np.zeros((0, len(ids)), np.float32),
                     np.zeros((0, len(ids)), np.float32))
  saved = checkpoint.restore(start) if checkpoint is not None else None
  evaluated = [k for k in range(1, saved.epoch + 1) if eval_every and k % eval_every == 0] \
      if saved is not None else []
  if saved is not None and list(saved.eval_epoch) != evaluated:
    logging.warning("%s holds test evaluations after epochs %s, not the %s this run's "
                    "--eval_every=%d makes; training starts from epoch 0.", checkpoint.path,
                    list(saved.eval_epoch), evaluated, eval_every)
    saved = None
  if saved is not None:
    start = saved
    if log is not None:
      log(f"{label or config.data.dataset}: resuming from {checkpoint.path} after epoch "
          f"{saved.epoch} of {train.epochs}")
  params = split_models(start.params, mesh)
  opt_state = split_models(start.opt_state, mesh)
  data_keys = split_models(jax.random.key_data(data_keys), mesh)
  x, y = replicate((to_device(dataset.x_train), to_device(dataset.y_train)), mesh)
  label = label or f"{config.data.dataset} hidden={list(config.model.hidden)}"
  per_device = len(run_ids) // mesh.devices.size
  if log is not None:
    log(f"{label}: {len(ids)} models x {train.epochs} epochs on {mesh.devices.size} "
        f"device(s), {min(chunk, per_device)} at a time per device"
        + (f"; {extra} padding model(s) trained and dropped" if extra else ""))

  progress = Progress(label, train.epochs, log, log_every, first=start.epoch)
  epoch_losses = []  # of the epochs this call trains; start.train_loss holds the earlier ones
  evals = {"eval_epoch": list(start.eval_epoch), "test_loss": list(start.test_loss),
           "test_acc": list(start.test_acc)}

  def losses_so_far():  # (epochs, R) on the host: one transfer, one gather across hosts
    new = to_host(jnp.stack(epoch_losses)) if epoch_losses else start.train_loss[:0]
    return np.concatenate([start.train_loss, new.astype(np.float32)])

  # Inside an epoch long enough, marks from the compiled loop give a line every few seconds.
  passes = mesh.devices.size * -(-per_device // min(chunk, per_device))
  marks = (StepMarks(label, train.epochs, steps, train.batch_size, passes, log, log_every)
           if log is not None else None)
  # A stop signal (Ctrl-C, SIGTERM) waits for the end of the epoch, which is checkpointed
  # first (`stopping`); the last epoch is not: the zoo itself is about to be written.
  with deferred(), receiving(marks):
    for e in range(start.epoch, train.epochs):
      if marks is not None:
        marks.begin(e + 1)
      params, opt_state, losses = run_epoch(params, opt_state, epoch_keys(data_keys, e), x, y)
      epoch_losses.append(losses)  # stays on the device: no wait for the epoch here
      if eval_every and ((e + 1) % eval_every == 0 or e + 1 == train.epochs):
        test_loss, test_acc = evaluate_zoo(model, params, dataset.x_test, dataset.y_test,
                                           plan=plan)
        evals["eval_epoch"].append(e + 1)
        evals["test_loss"].append(np.asarray(test_loss, np.float32)[:len(ids)])
        evals["test_acc"].append(np.asarray(test_acc, np.float32)[:len(ids)])
      crash_point("zoo:epoch")
      stop = stop_asked() and e + 1 < train.epochs
      if checkpoint is not None and (checkpoint.due(e + 1) or stop):
        checkpoint.save(TrainState(
            e + 1, to_host(params), to_host(opt_state), losses_so_far(),
            np.asarray(evals["eval_epoch"], np.int64),
            np.asarray(evals["test_loss"], np.float32).reshape(-1, len(ids)),
            np.asarray(evals["test_acc"], np.float32).reshape(-1, len(ids))))
        note_saved(str(checkpoint.path), f"the training state after epoch {e + 1} of "
                   f"{train.epochs} in {checkpoint.path}")
      if log is not None:
        losses = to_host(losses)[:len(ids)]
        finite = losses[np.isfinite(losses)]
        med = f"{np.median(finite):.4f}" if finite.size else "nan"
        progress.update(e + 1, f"median train loss {med}"
                        + (f", {losses.size - finite.size} non-finite"
                           if finite.size < losses.size else ""))
      if stop:
        stop_if_asked()  # the checkpoint just written is where the same command continues
  params = jax.device_put(jax.tree_util.tree_map(lambda p: p[:len(ids)], to_host(params)))
  history = {"train_loss": losses_so_far()[:, :len(ids)]}
  if evals["eval_epoch"]:
    history.update({k: np.asarray(v) for k, v in evals.items()})
  return Zoo(config, params, zoo_metrics(model, params, dataset, plan), history)


def zoo_metrics(model, params, dataset: Dataset, plan: Optional[ExecutionPlan] = None) -> list:
  """One `ModelMetrics` per model; a model with a non-finite loss is marked diverged, one
  with a finite loss but test accuracy at chance (see `is_collapsed`) is marked collapsed."""
  tr_loss, tr_acc = evaluate_zoo(model, params, dataset.x_train, dataset.y_train, plan=plan)
  te_loss, te_acc = evaluate_zoo(model, params, dataset.x_test, dataset.y_test, plan=plan)
  chance = chance_accuracy(dataset.y_test)
  metrics = []
  for k in range(len(tr_loss)):
    vals = dict(train_loss=float(tr_loss[k]), test_loss=float(te_loss[k]),
                train_acc=float(tr_acc[k]), test_acc=float(te_acc[k]))
    diverged = not all(np.isfinite(v) for v in vals.values())
    metrics.append(ModelMetrics(**vals, diverged=diverged,
                                collapsed=not diverged and is_collapsed(float(te_acc[k]), chance)))
  return metrics
