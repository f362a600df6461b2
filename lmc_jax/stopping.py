"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send first).

The entry points call `handle_stop_signals()`. A signal then raises `Stopped` where the code
happens to be, unless the code is inside `deferred()`: zoo training between two epochs,
saving a zoo and swapping it in. There the signal is only recorded (and a line says so); the
code calls `stop_if_asked()` at its next boundary (after an epoch, once it has written a
checkpoint; after a zoo is swapped in), which raises `Stopped` there. A second signal
while one is recorded stops at once.

`Stopped` is a `BaseException`, as `KeyboardInterrupt` is, so nothing catches it by
accident and every atomic write on the way out still removes its temporary. Code that puts
something on disk that a rerun continues from says so with `note_saved(key, text)`; the
entry point's one line (`stop_message`) names the latest of each key.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Dict, Optional

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Stopped(BaseException):
  """The run was asked to stop by signal `signum`; its exit status is 128 + signum."""

  def __init__(self, signum: int):
    self.signum = int(signum)
    super().__init__(NAMES.get(self.signum, f"signal {self.signum}"))

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


class _State:
  depth = 0  # how many `deferred()` blocks are open
  pending: Optional[int] = None  # a signal recorded inside one
  saved: Dict[str, str] = {}


def _on_signal(signum, frame) -> None:
  if _State.depth and _State.pending is None:
    _State.pending = signum
    print(f"{NAMES.get(signum, signum)} received: stopping at the next safe point, once what "
          "is running is saved (send it again to stop at once).", file=sys.stderr, flush=True)
    return
  _State.pending = None
  raise Stopped(signum)


def handle_stop_signals() -> None:
  """Makes SIGINT and SIGTERM stop the run as this module describes (main thread only)."""
  for signum in NAMES:
    signal.signal(signum, _on_signal)


@contextlib.contextmanager
def deferred():
  """Within the block a stop signal waits for `stop_if_asked()` (or the block's end)."""
  _State.depth += 1
  try:
    yield
  finally:
    _State.depth -= 1


def stop_asked() -> bool:
  return _State.pending is not None


def stop_if_asked() -> None:
  """Raises `Stopped` if a stop signal was recorded; call it where stopping loses nothing."""
  if _State.pending is not None:
    signum, _State.pending = _State.pending, None
    raise Stopped(signum)


def note_saved(key: str, text: str) -> None:
  """Records what is on disk for a rerun to continue from (`key`: a file or directory, so a
  later note on it replaces the earlier one)."""
  _State.saved[key] = text


def forget_saved() -> None:
  _State.saved.clear()
  _State.pending = None


def stop_message(stopped: BaseException) -> str:
  """The entry point's one line for a run stopped by `stopped` (a `Stopped` or a
  `KeyboardInterrupt`)."""
  how = str(stopped) if isinstance(stopped, Stopped) else NAMES[signal.SIGINT]
  if _State.saved:
    return (f"stopped by {how}; saved: {'; '.join(_State.saved.values())}. Run the same "
            "command again to continue from there.")
  return (f"stopped by {how} before anything was saved (nothing half-written is left); run "
          "the same command again to start over.")
