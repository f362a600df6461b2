"""Counting the programs JAX traces (`traced_programs`), for tests that something compiles
nothing, or compiles once."""
import contextlib

import jax

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def traced_programs():
  """Yields a list that gets one entry per program JAX traces for compilation inside the
  block (eager operations included: each is a program of its own)."""
  events = []

  def listen(event, duration, **kwargs):
    if event == TRACE_EVENT:
      events.append(kwargs.get("fun_name", "?"))

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
