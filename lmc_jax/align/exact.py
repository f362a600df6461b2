"""The true optimum for narrow nets: every permutation of B's hidden units, scored by the
epsilon of its line to A, in one vectorised sweep.

A net with hidden widths w_1..w_L has w_1! x ... x w_L! candidate permutations; the search
is exhaustive when that is at most `MAX_CANDIDATES` (8! = 40,320: one hidden layer of width
8, or three of width 4: 24^3 = 13,824) and refuses otherwise. It tells whether a high
epsilon after a heuristic means "no low-loss line exists" or "the heuristic missed it".
The optimum is for the data it is scored on (pass the split the curves are measured on).
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import numpy as np

from lmc_jax.align.registry import Alignment, AlignTask, Setting, register
from lmc_jax.errors import LmcError
from lmc_jax.lmc.batchnorm import reset_arguments
from lmc_jax.lmc.interpolation import NUM_ALPHAS, pair_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.nn.models import mlp_matmul_flops
from lmc_jax.symmetry.spec import PermutationSpec, apply_permutation, perm_sizes, without_signs

MAX_CANDIDATES = math.factorial(8)


class ExactResult(NamedTuple):
  perm: dict  # {name: (w,)}: the permutation of B with the lowest epsilon
  epsilon: float  # its epsilon
  all_epsilon: np.ndarray  # (candidates,) epsilon of every candidate, in `candidates` order


def num_candidates(sizes) -> int:
  return math.prod(math.factorial(n) for n in sizes.values())


def candidates(sizes) -> dict:
  """Every joint permutation: `{name: (C, n)}`, the names' permutations in
  `itertools.product` order of their sorted names (the last name varies fastest)."""
  names = sorted(sizes)
  per_name = [np.array(list(itertools.permutations(range(sizes[p]))), np.int32) for p in names]
  index = np.array(list(itertools.product(*[range(len(v)) for v in per_name])), np.int64)
  return {p: v[index[:, i]] for i, (p, v) in enumerate(zip(names, per_name))}


def exact_alignment(model, spec: PermutationSpec, params_a, params_b, x, y,
                    max_tflop: float = 1.0, reset_x=None, plan=None) -> ExactResult:
  """Best permutation of B by epsilon on (x, y), over all permutations of its hidden layers,
  every line measured as the barrier's are: with `reset_x` (training batches `(R, b, d)`)
  its BatchNorm statistics recomputed (`lmc.batchnorm`).

  Refuses a search whose matrix products would exceed `max_tflop` TFLOP (the default, 1,
  suits a CPU and can be raised on a GPU; search times are measured in BUILD_NOTES.md).
  """
  sizes = perm_sizes(spec, params_b)
  count = num_candidates(sizes)
  if count > MAX_CANDIDATES:
    widths = ", ".join(f"{sizes[p]}" for p in sorted(sizes))
    shown = f"{count:,}" if count < 10 ** 9 else f"about 10^{len(str(count)) - 1}"
    raise LmcError(f"Exact search over hidden widths {widths} means {shown} permutations; it "
                   f"handles up to {MAX_CANDIDATES:,} (e.g. one layer of width up to 8, or three "
                   "of width up to 4).")
  flops = count * NUM_ALPHAS * len(x) * mlp_matmul_flops(params_b)
  if flops > max_tflop * 1e12:
    raise LmcError(f"Exact search over {count:,} permutations on {len(x):,} samples needs "
                   f"{flops / 1e12:.3g} TFLOP, over the {max_tflop:g} TFLOP limit; raise "
                   "--exact_max_tflop on a faster device.")
  cands = candidates(sizes)
  params_b = jax.device_put(params_b)
  permuted = jax.vmap(lambda pr: apply_permutation(spec, pr, params_b))(cands)
  both = jax.tree_util.tree_map(lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)]),
                                params_a, permuted)
  pairs = np.stack([np.zeros(count, np.int32), 1 + np.arange(count, dtype=np.int32)], 1)
  curves = pair_sweep(model, both, pairs, x, y, plan=plan, **reset_arguments(reset_x))
  eps = epsilon(curves.loss, curves.alphas)
  best = int(np.argmin(eps))
  return ExactResult({p: np.asarray(v[best]) for p, v in cands.items()}, float(eps[best]), eps)


@register("exact", "the epsilon-optimal permutation onto the reference, by exhaustive search "
          "over the split the curves are measured on (narrow nets only)",
          settings=(Setting("exact_max_tflop", 1.0, "Exact search refuses (and is skipped) "
                            "where one pair would need more TFLOP than this (the default suits "
                            "a CPU; raise it on a GPU).", above=0),))
def _align_exactly(task: AlignTask) -> Alignment:
  task = task._replace(spec=without_signs(task.spec))  # it enumerates plain permutations
  ref, found = task.member(task.reference), {}

  def one(k):
    found[k] = exact_alignment(task.model, task.spec, ref, task.member(k), task.eval_x,
                               task.eval_y, task.settings.exact_max_tflop, task.reset_x,
                               task.plan)
    return found[k].perm
  perms = task.star(one)
  return Alignment(perms, {"epsilon": {k: r.epsilon for k, r in found.items()}})
