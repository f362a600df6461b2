"""Orthogonal activation matching: activation matching where the groups the network lets
rotate (`orthogonal.orthogonal_groups`) are aligned by an orthogonal map fitted to the
units' activations. Registered as the alignment method `orthogonal_activation`.

For a permuting group it is activation matching (`activation.activation_matching`): the
linear assignment of the summed correlations. For a rotating group `p` it solves the
orthogonal Procrustes problem on the features: with `F_A`, `F_B` `(samples, n)` the units'
values at every site that reads them (`units.feature_sites`), the map `q` minimising
`sum over sites ||F_A - F_B q^T||^2 / samples` is `q = U V^T` for `E[F_A^T F_B] = U S V^T`
(`activation.feature_products`, uncentred: a rotation acts on the raw values, their mean
included). `new = q @ old` along the group's axes of B then aligns it, as for `orthogonal`.

Two passes over the inputs, nothing iterates. A model's features do not depend on how its
other groups are permuted, and where a site averages over another group's axis (the heads
of attention, for the features inside a head) that average does not either, so the first
pass fits every rotation. A rotation does change an average over its own axis (a head's
features, averaged to score the head), so the second pass correlates the permuting groups
with B's rotations applied.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lmc_jax.align.activation import feature_correlations, feature_products, matching_of
from lmc_jax.align.orthogonal import apply_orthogonal, nearest_orthogonal
from lmc_jax.align.orthogonal_matching import (
  OrthogonalMatch,
  rotating_alignment,
  rotating_groups,
  unsigned_on,
)
from lmc_jax.align.registry import Alignment, AlignTask, register
from lmc_jax.errors import LmcError
from lmc_jax.symmetry.spec import PermutationSpec, perm_sizes


def orthogonal_activation_matching(model, spec: PermutationSpec, params_a, params_b, x,
                                   rotating: Sequence[str]) -> OrthogonalMatch:
  """Aligns B (one model) to A on inputs `x` `(n, ...)`: the permutations of the spec's
  groups from the features' correlations, orthogonal maps of those in `rotating` (which
  the caller has checked the network lets rotate) from their products."""
  if len(x) < 2:
    raise LmcError(f"Activation matching needs at least 2 inputs to correlate, got {len(x)}.")
  spec = unsigned_on(spec, rotating)
  products = feature_products(model, spec, params_a, params_b, x)
  maps = {p: nearest_orthogonal(products[p]) for p in rotating}
  turned = apply_orthogonal(spec, maps, params_b)
  perm = matching_of(spec, feature_correlations(model, spec, params_a, turned, x,
                                                by_parity=True))
  sizes = perm_sizes(spec, params_a)
  perm.update({p: np.arange(sizes[p]) for p in rotating})
  return OrthogonalMatch({p: np.asarray(v) for p, v in perm.items()}, maps, [], 0)


@register("orthogonal_activation", "activation matching with every group the network lets "
          "rotate aligned by the orthogonal map that best carries its activations onto the "
          "reference's", uses=("fit_samples", "signs"))
def _align_orthogonally_by_activations(task: AlignTask) -> Alignment:
  rotating = rotating_groups(task)
  ref = task.member(task.reference)
  found = {k: orthogonal_activation_matching(task.model, task.spec, ref, task.member(k),
                                             task.fit_x, rotating) for k in task.movers}
  return rotating_alignment(task, rotating, found, {})
