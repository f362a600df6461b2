"""Named moments at which a fault-injection test can kill this process.

`crash_point("zoo.checkpoint")` does nothing unless the environment variable
`LMC_JAX_CRASH_AT` names that point: `name` kills the process (SIGKILL, as an out-of-memory
killer or a pre-empted job would) the first time the point is reached, `name#k` the k-th
time. Tests use it to stop a run at exact moments (mid-write, between the two renames of
a swap, after a checkpoint) and check that what is on disk still loads.
`LMC_JAX_CRASH_SIGNAL=SIGTERM` (or `SIGINT`) sends that signal instead, as a batch
scheduler or Ctrl-C would, at the same exact moment.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LMC_JAX_CRASH_AT"
SIGNAL_ENV = "LMC_JAX_CRASH_SIGNAL"
_seen: Counter = Counter()


def crash_point(name: str) -> None:
  want = os.environ.get(ENV)
  if not want:
    return
  point, _, nth = want.partition("#")
  if point != name:
    return
  _seen[name] += 1
  if _seen[name] == int(nth or 1):
    os.kill(os.getpid(), getattr(signal, os.environ.get(SIGNAL_ENV) or "SIGKILL"))
