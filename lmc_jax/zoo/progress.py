"""Progress of a long loop over epochs: a line at most every few seconds, with the elapsed
time and an estimate of the time left, instead of one line per epoch; and inside an epoch
long enough to need it, the step, images per second and the time left (`StepMarks`)."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp

MARKS_PER_EPOCH = 32  # host callbacks in one epoch's compiled loop, at most
MIN_MARKED_STEPS = 16  # epochs of fewer steps have no marks: one epoch is one step of progress


def format_seconds(s: float) -> str:
  """`42s`, `3m05s`, `1h02m`."""
  s = max(0.0, float(s))
  if s < 60:
    return f"{s:.0f}s"
  if s < 3600:
    return f"{int(s // 60)}m{int(s % 60):02d}s"
  return f"{int(s // 3600)}h{int((s % 3600) // 60):02d}m"


class Progress:
  """Calls `log(line)` for step k of `total` when `every` seconds have passed since the last
  line, and always for the last step. The estimate of the time left assumes the remaining
  steps take as long as the mean step so far (the first includes compilation). `first`:
  steps done before this loop started (a resumed run); they count in neither."""

  def __init__(self, label: str, total: int, log: Optional[Callable[[str], None]],
               every: float = 5.0, clock: Callable[[], float] = time.perf_counter,
               first: int = 0):
    self.label, self.total, self.log, self.every, self.clock = label, total, log, every, clock
    self.first = first
    self.start = clock()
    self.last = self.start

  def update(self, step: int, detail: str = "") -> Optional[str]:
    """Step `step` (1-based) is done; returns the line logged, if any."""
    now = self.clock()
    if self.log is None or (step < self.total and now - self.last < self.every):
      return None
    self.last = now
    elapsed = now - self.start
    left = elapsed / max(1, step - self.first) * (self.total - step)
    line = (f"{self.label}: epoch {step}/{self.total}{', ' + detail if detail else ''}; "
            f"{format_seconds(elapsed)} elapsed" + (f", about {format_seconds(left)} left"
                                                    if step < self.total else ""))
    self.log(line)
    return line


_receiver: Optional[Callable[[int], None]] = None  # the running epoch's, set by `receiving`
_receiver_lock = threading.Lock()


def mark_interval(steps: int) -> int:
  """Steps between two marks in an epoch of `steps` steps; 0: no marks."""
  return 0 if steps < MIN_MARKED_STEPS else -(-steps // MARKS_PER_EPOCH)


def mark_step(step, interval: int) -> None:
  """Inside a compiled epoch: after step `step` (0-based, a traced int), tells the host every
  `interval` steps (`jax.debug.callback`; the arithmetic is untouched). Under `vmap` the
  step is the same for every model, so the host hears it once."""
  if interval:
    jax.lax.cond((step + 1) % interval == 0,
                 lambda: jax.debug.callback(deliver_mark, step + 1), lambda: None)


def deliver_mark(step) -> None:
  """Step `step` (1-based) of the running epoch is done: tells the `receiving` receiver."""
  receiver = _receiver
  if receiver is not None:
    receiver(int(jnp.asarray(step)))


@contextlib.contextmanager
def receiving(receiver: Optional[Callable[[int], None]]):
  """Marks of the epochs run inside go to `receiver(step)` (1-based steps done)."""
  global _receiver
  with _receiver_lock:
    previous, _receiver = _receiver, receiver
  try:
    yield
  finally:
    with _receiver_lock:
      _receiver = previous


class StepMarks:
  """Lines inside the epochs of a run of `epochs` epochs, each of `steps` steps of `batch`
  images per model, run in `passes` passes (chunks of models, or devices, one mark each):
  at most every `every` seconds, the step, images per second per model and the time left
  of the epoch. `begin(epoch)` starts an epoch; each mark (`deliver_mark`) is
  `mark_interval(steps)` steps of one pass."""

  def __init__(self, label: str, epochs: int, steps: int, batch: int, passes: int,
               log: Optional[Callable[[str], None]], every: float = 5.0,
               clock: Callable[[], float] = time.perf_counter):
    self.label, self.epochs, self.steps, self.batch = label, epochs, steps, batch
    self.passes, self.log, self.every, self.clock = passes, log, every, clock
    self.interval = mark_interval(steps)
    self.begin(0)

  def begin(self, epoch: int) -> None:
    self.epoch, self.done = epoch, 0
    self.start = self.last = self.clock()

  def __call__(self, step: int) -> Optional[str]:
    """A mark: `interval` more steps of one pass are done; returns the line logged, if any."""
    self.done += self.interval
    now, total = self.clock(), self.steps * self.passes
    if self.log is None or now - self.last < self.every or self.done >= total:
      return None
    self.last, elapsed = now, now - self.start
    rate = self.done * self.batch / self.passes / max(elapsed, 1e-9)
    left = elapsed / self.done * (total - self.done)
    chunk = min(self.passes, (self.done - 1) // self.steps + 1)  # marks come pass by pass
    where = f"step {self.done - (chunk - 1) * self.steps}/{self.steps}" + (
        f" of model chunk {chunk}/{self.passes}" if self.passes > 1 else "")
    line = (f"{self.label}: epoch {self.epoch}/{self.epochs}, {where}, {rate:.0f} images/s "
            f"per model, about {format_seconds(left)} left of the epoch")
    self.log(line)
    return line
