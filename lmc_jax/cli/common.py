"""What every entry point shares: one-sentence errors and a non-zero exit."""
from __future__ import annotations

import functools
import logging as stdlib_logging
import signal
import sys
from pathlib import Path

import jax
from absl import app, flags, logging

from lmc_jax.allocator import keep_freed_memory
from lmc_jax.atomic_files import NO_SPACE, disk_full
from lmc_jax.data.tfds import use_data_dir
from lmc_jax.errors import LmcError
from lmc_jax.stopping import Stopped, handle_stop_signals, stop_message

# JAX logs at INFO that it looked for a TPU and found none, on every run of every entry
# point; only what is there matters.
stdlib_logging.getLogger("jax._src.xla_bridge").setLevel(stdlib_logging.WARNING)


def run_main(main, doc: str, module: str) -> None:
  """`app.run(main)` for the entry point `module` (its `__name__`), however it was started:
  `--help` shows its docstring `doc` and its flags, which absl looks up under the started
  file (`sys.argv[0]`: a console script's wrapper or an `experiments/` shim)."""
  sys.modules["__main__"].__doc__ = doc
  keep_freed_memory()  # before XLA starts its threads and allocates (allocator.py)
  handle_stop_signals()
  if module != "__main__":
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main, flags_parser=parse_flags)


def parse_flags(argv):
  """absl's flag parsing, with a bad flag (an unknown name, a value not of its type or not
  one of its choices) reported as every other bad input is: one line, exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}; see --help for the flags and the values they take.", file=sys.stderr)
    sys.exit(2)


def exit_on_lmc_error(main):
  """Turns an LmcError (and a disk found full anywhere) into one line on stderr and exit
  status 2, and a stop signal
  (Ctrl-C, SIGTERM: `stopping`) into one line saying what was saved and exit status 128 +
  the signal's number (130, 143)."""
  @functools.wraps(main)
  def wrapped(argv):
    # TFDS's data directory for tfds:NAME datasets (a main called unparsed keeps its own)
    if "data_dir" in flags.FLAGS and flags.FLAGS.is_parsed():
      use_data_dir(flags.FLAGS.data_dir)
    try:
      return main(argv)
    except LmcError as e:
      logging.flush()
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except OSError as e:  # a full disk met outside the atomic writes (a folder, a copy)
      if e.errno not in NO_SPACE:
        raise
      logging.flush()
      print(f"error: {disk_full(Path(e.filename or '.'))}", file=sys.stderr)
      sys.exit(2)
    except (Stopped, KeyboardInterrupt) as e:
      logging.flush()
      print(stop_message(e), file=sys.stderr)
      sys.exit(e.exit_status if isinstance(e, Stopped) else 128 + signal.SIGINT)
  return wrapped


def int_list(values, name: str):
  """The integers of list flag `--name`; an empty list or a non-integer is refused."""
  values = [v for v in values if v.strip()]
  if not values:
    raise LmcError(f"--{name} is empty; pass one or more comma-separated integers, e.g. "
                   f"--{name}=1,2.")
  try:
    return [int(v) for v in values]
  except ValueError:
    raise LmcError(f"--{name} must be a comma-separated list of integers, got "
                   f"{','.join(values)}.") from None


def define_distributed_flags():
  flags.DEFINE_bool("distributed", False, "Train across several hosts with jax.distributed: "
                    "start the same command on every host (a cluster scheduler such as SLURM "
                    "is detected; otherwise pass --coordinator, --num_processes, --process_id).")
  flags.DEFINE_string("coordinator", None, "host:port of process 0, for --distributed.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, for --distributed.",
                       lower_bound=1)
  flags.DEFINE_integer("process_id", None, "This process's index, for --distributed.",
                       lower_bound=0)


def init_distributed():
  """Joins the processes named by the --distributed flags (a no-op without --distributed)."""
  f = flags.FLAGS
  if not f.distributed:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over gloo
  jax.distributed.initialize(coordinator_address=f.coordinator, num_processes=f.num_processes,
                             process_id=f.process_id)
  logging.info("process %d of %d; %d devices in all", jax.process_index(), jax.process_count(),
               jax.device_count())
