"""Progress of a long loop over epochs: a line at most every few seconds, with the elapsed
time and an estimate of the time left, instead of one line per epoch."""
from __future__ import annotations

import time
from typing import Callable, Optional


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
