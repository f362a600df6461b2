"""Seconds of Sinkhorn matching against weight matching on one pair, measured in one run.

Rows: weight matching (the `weight` method, and Sinkhorn's start); Sinkhorn on the expected
loss with each matrix projected on its own (`grouped=False`, as before the batched
projection: the baseline), the same with the batched projection, and Sinkhorn on the
distance objective (no data) both ways it runs: one compiled scan (the accelerator's path,
forced here) and the host's numpy loop (a CPU's; nothing to compile), their matrices
compared. The data objectives run as the plan says (on one CPU device a conv net loops
over jitted steps from the host). Each row's first call
compiles and runs; then every row runs again `repeats` times, the rows interleaved so that
other work on the machine falls on all of them alike, and the median is kept.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, List, NamedTuple, Optional

import jax
import numpy as np

from lmc_jax.align.sinkhorn import sinkhorn_matching
from lmc_jax.align.weight import align_zoo
from lmc_jax.execution import ExecutionPlan, plan_or_default
from lmc_jax.tree_utils import take


class SinkhornTimes(NamedTuple):
  """One row of `bench_sinkhorn`."""
  name: str
  steps: int  # Sinkhorn steps timed (0: weight matching)
  first_s: float  # the first call: compilation and one run
  run_s: float  # median of the later calls: the run alone
  max_abs_diff: float  # of its final matrices from its baseline's (the per-matrix expected
  #   row, the compiled distance row; nan where not comparable)
  first_cpu_s: float  # this process's CPU seconds in the first call (what sharing the
  #   machine does not inflate: compilation is one thread)

  @property
  def compile_s(self) -> float:
    return max(self.first_s - self.run_s, 0.0)

  def estimate_s(self, steps: int) -> float:
    """Compilation plus `steps` steps at this row's rate (weight matching: its first call)."""
    return self.first_s if self.steps == 0 else self.compile_s + self.run_s * steps / self.steps


def _timed(fn: Callable):
  t, c = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - t, time.process_time() - c


def bench_sinkhorn(model, spec, params_stack, x, y, data_steps: int = 2,
                   distance_steps: int = 50, repeats: int = 3, lr: float = 1.0,
                   plan: Optional[ExecutionPlan] = None) -> List[SinkhornTimes]:
  """Rows of seconds for aligning model 1 of `params_stack` (two models, a permutation
  spec without signs) to model 0: weight matching, and Sinkhorn from its permutations, the
  data objectives `data_steps` steps on `(x, y)` (0: left out), the distance objective
  `distance_steps`."""
  key = jax.random.key(0)
  a, b = take(params_stack, 0), take(params_stack, np.array([1]))
  calls = {
      "weight matching": lambda: align_zoo(key, spec, params_stack, matcher="auto", plan=plan),
  }
  start = [calls["weight matching"]().perms[1]]
  steps = {"weight matching": 0}
  plan = plan_or_default(plan)
  scan_plan = dataclasses.replace(plan, accelerator=True)
  rows = (("sinkhorn expected, per matrix (before)", "expected", False, data_steps, plan),
          ("sinkhorn expected, batched", "expected", True, data_steps, plan),
          ("sinkhorn distance, compiled scan", "distance", True, distance_steps, scan_plan),
          ("sinkhorn distance, numpy on the host", "distance", True, distance_steps,
           dataclasses.replace(plan, accelerator=False)))
  for name, objective, grouped, n, run_plan in (r for r in rows if r[3] > 0):
    calls[name] = (lambda objective=objective, grouped=grouped, n=n, run_plan=run_plan:
                   sinkhorn_matching(key, model, spec, a, b, start, x, y, steps=n, lr=lr,
                                     objective=objective, plan=run_plan, grouped=grouped))
    steps[name] = n
  first, first_cpu, results = {}, {}, {}
  for name, fn in calls.items():
    results[name], first[name], first_cpu[name] = _timed(fn)
  runs = {name: [] for name in calls}
  for _ in range(repeats):
    for name, fn in calls.items():
      runs[name].append(_timed(fn)[1])
  out = []
  for name in calls:
    soft = getattr(results[name], "soft", None)
    base_name = rows[0][0] if "expected" in name else rows[2][0]
    base = getattr(results.get(base_name), "soft", None)
    diff = (max(float(np.max(np.abs(soft[p] - base[p]))) for p in base)
            if base is not None and soft is not None else float("nan"))
    out.append(SinkhornTimes(name, steps[name], first[name], float(np.median(runs[name])),
                             diff, first_cpu[name]))
  return out
