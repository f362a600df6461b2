"""Progress lines: throttled to one every few seconds, the last always, with a fair ETA."""
import pytest

from lmc_jax.zoo.progress import Progress, format_seconds


class Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def test_lines_are_throttled_and_the_last_is_always_logged():
  clock, lines = Clock(), []
  p = Progress("zoo", 10, lines.append, every=5.0, clock=clock)
  for step in range(1, 11):  # 2 s per epoch
    clock.t += 2.0
    p.update(step, f"loss {step}")
  # Logged at 6 s (epoch 3: 5 s since the start), 12 s (epoch 6), 18 s (9), and epoch 10.
  assert [line.split(":")[1].split(",")[0].strip() for line in lines] == [
      "epoch 3/10", "epoch 6/10", "epoch 9/10", "epoch 10/10"]
  assert lines[0] == "zoo: epoch 3/10, loss 3; 6s elapsed, about 14s left"
  assert lines[-1] == "zoo: epoch 10/10, loss 10; 20s elapsed"


def test_no_log_no_lines():
  assert Progress("zoo", 3, None).update(3) is None


@pytest.mark.parametrize("s, text", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m")])
def test_format_seconds(s, text):
  assert format_seconds(s) == text


def test_step_marks_count_steps_per_pass_and_rate_and_time_left():
  """32 steps of 64 images in 2 passes (chunks of models); a mark every 1 step; 0.5 s per
  step of one pass. Lines at most every 5 s, none once the epoch is whole."""
  from lmc_jax.zoo.progress import StepMarks, mark_interval
  assert mark_interval(15) == 0 and mark_interval(16) == 1 and mark_interval(235) == 8
  clock, lines = Clock(), []
  marks = StepMarks("zoo", 3, 32, 64, 2, lines.append, every=5.0, clock=clock)
  marks.begin(2)
  for _ in range(64):
    clock.t += 0.5
    marks(0)
  assert len(lines) == 6  # at 5, 10, ... 30 s of 32 s
  # 10 marks of 1 step in 5 s: 5 steps of each of 2 passes' models -> 64 images/s per model.
  assert lines[0] == ("zoo: epoch 2/3, step 10/32 of model chunk 1/2, 64 images/s per model, "
                      "about 27s left of the epoch")
  assert lines[-1].startswith("zoo: epoch 2/3, step 28/32 of model chunk 2/2,")


def _tiny_moons(n_train):
  from lmc_jax.config import default_config
  return default_config("moons", hidden=(8,), num_models=3, epochs=2, n_train=n_train,
                        n_test=64, batch_size=64)


def test_marks_inside_an_epoch_log_lines_and_leave_training_bit_for_bit(monkeypatch):
  """Marks ride in the compiled epoch as host callbacks: the lines come, and the zoo equals
  one trained with no marks compiled in at all."""
  import numpy as np

  from lmc_jax.data.datasets import load_dataset
  from lmc_jax.zoo import progress, training
  config = _tiny_moons(2048)  # 32 steps an epoch: a mark every step
  data = load_dataset(config)
  lines = []
  marked = training.train_zoo(config, data, log=lines.append, log_every=0.0)
  inside = [line for line in lines if ", step " in line]
  assert inside and all("images/s per model" in line for line in inside), lines
  assert {line.split("epoch ")[1].split(",")[0] for line in inside} == {"1/2", "2/2"}
  monkeypatch.setattr(progress, "MIN_MARKED_STEPS", 10**9)
  training.zoo_epoch_fn.cache_clear()
  plain = training.train_zoo(config, data, log=None)
  training.zoo_epoch_fn.cache_clear()
  for a, b in zip(np.asarray(marked.history["train_loss"]), plain.history["train_loss"]):
    np.testing.assert_array_equal(a, b)
  import jax
  for a, b in zip(jax.tree_util.tree_leaves(marked.variables),
                  jax.tree_util.tree_leaves(plain.variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
