"""Images per second per model of a conv zoo's training, lmc_jax against PyTorch in one run.

`bench_peer` times, for one network, optimizer and batch size:
- a bare step: one model's jitted training step on a fixed batch (lmc_jax), and the torch
  twin's forward, backward and optimizer step on the same batch size
  (`analysis.torch_peers`);
- a zoo epoch: the zoo's own epoch as `train_zoo` runs it (shuffle, augmentation, losses
  kept, every model of the zoo), and the torch twins' epochs one model after another with
  the same shuffling, augmentation and mean loss.
The sides are timed in turn, `repeats` times (a step's time each time the median of
`step_repeats` steps), and the median of each is kept, so that
load from other work on the machine falls on both alike. `baseline` (optional) is a
second Flax network timed the same way: the previous path of the same network. Every side runs
in this one process, so under the same malloc settings (the bench's entry point keeps freed
memory: `allocator`).
"""
from __future__ import annotations

import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.analysis import torch_peers
from lmc_jax.config import ZooConfig
from lmc_jax.data.datasets import Dataset, dataset_info
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.host_arrays import to_device
from lmc_jax.nn.forward import split_tree
from lmc_jax.tree_utils import take
from lmc_jax.zoo.footprint import models_per_chunk
from lmc_jax.zoo.training import (
  augment_shape,
  epoch_keys,
  init_params,
  make_train_step,
  model_keys,
  steps_per_epoch,
  zoo_epoch_fn,
)


class PeerTimes(NamedTuple):
  """`bench_peer`: median seconds of each side (None where a side did not run)."""
  batch: int
  models: int  # models in one zoo epoch
  train_samples: int  # samples in one epoch
  step_s: float  # lmc_jax, one model's bare step
  epoch_s: float  # lmc_jax, the zoo's epoch (all models)
  baseline_step_s: Optional[float]  # the baseline network's
  baseline_epoch_s: Optional[float]
  torch_step_s: Optional[float]
  torch_epoch_s: Optional[float]  # all models, one after another
  torch_skipped: Optional[str]  # why the torch side did not run

  def images_per_s(self, side: str, what: str) -> Optional[float]:
    """Images per second per model of `side` ('lmc_jax', 'baseline', 'torch') for `what`
    ('step' or 'epoch')."""
    prefix = {"lmc_jax": "", "baseline": "baseline_", "torch": "torch_"}[side]
    s = getattr(self, f"{prefix}{what}_s")
    if s is None:
      return None
    return self.batch / s if what == "step" else self.train_samples * self.models / s


def _block(tree):
  return jax.tree_util.tree_map(lambda v: v.block_until_ready(), tree)


def _jax_sides(model, config: ZooConfig, data: Dataset, plan: ExecutionPlan):
  """(step, epoch): zero-argument callables that run one bare step / one zoo epoch and
  wait for it. Both are warmed up (compiled) here."""
  train = config.train
  ids = list(range(train.num_models))
  init_keys, data_keys = model_keys(train.seed, ids)
  params = init_params(model, data.x_train.shape[1], init_keys)
  x, y = to_device(data.x_train), to_device(data.y_train)
  one = take(params, 0)
  loop = plan.host_loops(one)
  b = min(train.batch_size, len(data.y_train))
  chunk = 1 if loop else models_per_chunk(one, b, len(ids), plan)
  steps = steps_per_epoch(len(data.y_train), train.batch_size)
  tx, zoo_epoch = zoo_epoch_fn(model, config.optim, train.epochs * steps, train.batch_size,
                               augment_shape(config, dataset_info(config.data)),
                               None if chunk >= len(ids) else chunk, loop)
  opt = jax.vmap(lambda t: tx.init(split_tree(t)[0]))(params)
  keys = epoch_keys(jax.random.key_data(data_keys), 0)
  state = [params, opt]

  def epoch():  # the zoo epoch donates its inputs: carry the state from call to call
    state[0], state[1], losses = zoo_epoch(state[0], state[1], keys, x, y)
    _block(losses)

  step = jax.jit(make_train_step(model, tx))
  xb, yb, wb = x[:b], y[:b], jnp.ones((b,), jnp.float32)
  one_state = [one, take(opt, 0)]

  def bare():
    one_state[0], one_state[1], loss = step(one_state[0], one_state[1], xb, yb, wb)
    _block(loss)

  epoch()
  bare()
  return bare, epoch


def bench_peer(config: ZooConfig, data: Dataset, model, baseline=None, repeats: int = 3,
               step_repeats: int = 5, plan: Optional[ExecutionPlan] = None) -> PeerTimes:
  """Median seconds of a bare step and a zoo epoch of `model` trained as `config` says on
  `data`, of the `baseline` network (if given) and of the torch twin (where torch is
  importable and has one: `torch_peers.available`, `unsupported`), timed in turn."""
  plan = plan_or_default(plan)
  train = config.train
  b = min(train.batch_size, len(data.y_train))
  skipped = torch_peers.available() or torch_peers.unsupported(model, config.optim)
  sides = {"lmc_jax": _jax_sides(model, config, data, plan)}
  if baseline is not None:
    sides["baseline"] = _jax_sides(baseline, config, data, plan)
  if skipped is None:
    augment = augment_shape(config, dataset_info(config.data)) is not None
    sides["torch"] = (
        lambda: torch_peers.time_step(model, config.optim, b, steps=step_repeats),
        lambda: torch_peers.time_epoch(model, config.optim, data.x_train, data.y_train,
                                       train.batch_size, train.num_models, augment))
  times = {name: ([], []) for name in sides}
  for _ in range(repeats):
    for name, (step, epoch) in sides.items():
      if name == "torch":  # times itself, warm-up apart
        times[name][0].append(step())
        times[name][1].append(epoch())
        continue
      steps = []
      for _ in range(step_repeats):
        t = time.perf_counter()
        step()
        steps.append(time.perf_counter() - t)
      times[name][0].append(float(np.median(steps)))
      t = time.perf_counter()
      epoch()
      times[name][1].append(time.perf_counter() - t)
  med = lambda name, i: float(np.median(times[name][i])) if name in times else None
  return PeerTimes(b, train.num_models, len(data.y_train), med("lmc_jax", 0), med("lmc_jax", 1),
                   med("baseline", 0), med("baseline", 1), med("torch", 0), med("torch", 1),
                   skipped)
