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
