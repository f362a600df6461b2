"""The name of every file lmc_jax writes, in one place: the modules that write a file and
the report that reads it both take the name from here.

Per zoo directory: the constants. Per family of zoos (`label`, e.g. `moons`,
`cifar10_sgd`) or per comparison (`name`, e.g. `moons_e6`), in the figures folder: the
functions.
"""
from __future__ import annotations

# Inside a zoo directory.
ZOO_JSON = "zoo.json"
PARAMS_NPZ = "params.npz"
HISTORY_NPZ = "history.npz"  # per-epoch training history, numpy alone reads it
BARRIER_JSON = "barrier.json"
REDUNDANCY_JSON = "redundancy.json"
SWA_JSON = "swa.json"
PLANE_JSON = "plane.json"
PLANE_PNG = "plane.png"
CHECKPOINT_NPZ = "checkpoint.npz"  # training state of an unfinished zoo (zoo.checkpoint)
HOLDER_NOTE = ".lmc_jax.lock"  # who holds the directory's lock (dir_lock)
# Results computed from a zoo's params: a zoo trained again leaves them behind.
ZOO_RESULTS = (BARRIER_JSON, REDUNDANCY_JSON, SWA_JSON, PLANE_JSON, PLANE_PNG)
# Every name lmc_jax writes into a zoo directory (its lock's note included).
ZOO_DIR_FILES = (ZOO_JSON, PARAMS_NPZ, HISTORY_NPZ, CHECKPOINT_NPZ, HOLDER_NOTE,
                 *ZOO_RESULTS)


def zoo_summary_csv(dataset: str) -> str:
  """Next to the zoos: mean and std of the metrics per width."""
  return f"{dataset}_zoo_summary.csv"


def training_history_png(dataset: str) -> str:
  """Next to the zoos: training loss per epoch, one panel per zoo."""
  return f"{dataset}_training_history.png"


def epsilon_summary_csv(label: str) -> str:
  return f"{label}_epsilon_summary.csv"


def barrier_vs_width_png(label: str) -> str:
  return f"{label}_barrier_vs_width.png"


def epsilon_vs_width_png(label: str) -> str:
  return f"{label}_epsilon_vs_width.png"


def curves_png(label: str, which: str) -> str:
  """`which`: naive, aligned, or an alignment method's name."""
  return f"{label}_curves_{which}.png"


def epsilon_matrix_png(label: str, which: str) -> str:
  return f"{label}_epsilon_matrix_{which}.png"


def alignment_methods_csv(label: str) -> str:
  return f"{label}_alignment_methods.csv"


def alignment_methods_png(label: str) -> str:
  return f"{label}_alignment_methods.png"


def alignment_diagnostics_csv(label: str) -> str:
  return f"{label}_alignment_diagnostics.csv"


def dynamics_json(name: str) -> str:
  return f"{name}_dynamics.json"


def epsilon_groups_png(name: str) -> str:
  return f"{name}_epsilon_groups.png"


def swa_losses_png(dataset: str) -> str:
  return f"{dataset}_swa_losses.png"


def swa_curves_png(dataset: str) -> str:
  return f"{dataset}_swa_curves.png"


def redundancy_table_csv(dataset: str) -> str:
  return f"{dataset}_redundancy_table.csv"


def redundancy_epsilon_png(dataset: str) -> str:
  return f"{dataset}_redundancy_epsilon.png"


def unit_cosine_png(dataset: str) -> str:
  return f"{dataset}_unit_cosine.png"


def decision_boundaries_png(dataset: str) -> str:
  return f"{dataset}_decision_boundaries.png"


def plane_png(dataset: str) -> str:
  """The report's copy of one zoo's plane figure."""
  return f"{dataset}_plane.png"


# The format each JSON file is written in (its "format" field). A reader refuses a file of
# a newer format than it knows (`schema.check_format`), since its fields may mean
# something else there.
ZOO_FORMAT = 2  # 2: the config in sections; params.npz holds every model's whole variables dict
# 2: weight matching's curves stored once, as "aligned"; 3: every method's curves in its
# entry of "methods", weight matching's too, and REPAIR's as its entry's "repaired" (no
# "<name>+repair" entries); 4: temperature-calibrated curves; 5: the orthogonal maps of
# methods that rotate groups ("maps"). `barrier_records` reads them all.
BARRIER_FORMAT = 5
REDUNDANCY_FORMAT = 1
SWA_FORMAT = 1
PLANE_FORMAT = 1
DYNAMICS_FORMAT = 1
BENCH_FORMAT = 1
SOURCE_FORMAT = 1  # a dataset's SOURCE.json
CHECKPOINT_FORMAT = 1  # the meta document of a training checkpoint

# Written by experiments.merge into its --out folder.
MERGE_JSON = "merge.json"
MERGE_FORMAT = 1
MERGE_METHODS_CSV = "merge_methods.csv"
MERGED_DIR = "merged"  # merged/<method>.npz: a merged network's variables, keyed as params.npz
MERGE_ALPHA_PNG = "merge_accuracy_vs_alpha.png"
MERGE_BARS_PNG = "merge_accuracy_bars.png"
