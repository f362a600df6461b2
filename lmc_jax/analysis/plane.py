"""The loss plane through three networks of a zoo on disk, before and after weight-matching
two of them to the third (the study's Fig 1.1 and 1.2). Writes `<zoo>/plane.json`."""
from __future__ import annotations

from typing import List, NamedTuple, Sequence

import jax

from lmc_jax.align.weight import weight_matching
from lmc_jax.atomic_files import atomic_write_json
from lmc_jax.errors import LmcError
from lmc_jax.lmc.loss_plane import plane_grid
from lmc_jax.result_files import PLANE_JSON
from lmc_jax.study_records import PlaneGrid, PlaneRecord
from lmc_jax.symmetry.spec import apply_permutation
from lmc_jax.zoo.handle import held_zoo
from lmc_jax.zoo.io import package_versions


class PlaneResult(NamedTuple):
  models: List[int]  # A, B, C
  naive: PlaneGrid
  aligned: PlaneGrid  # B and C weight-matched to A
  data_name: str  # the name figures show
  width: int


def plane_zoo(zoo, models: Sequence[int] = (0, 1, 2), resolution: int = 31,
              margin: float = 0.25, max_iter: int = 50, seed: int = 0,
              data_dir="data", precision: str = "fp32") -> PlaneResult:
  """Test loss on the plane through `models` (A, B, C) of the zoo `zoo` (a `ZooHandle`, or
  its directory), naive and with B and C weight-matched to A, with matmuls at `precision`,
  holding the directory's lock throughout (`zoo.handle.held_zoo`); writes plane.json into
  its directory."""
  # The lock first (held already where the entry point took it): no zoo run swaps another
  # zoo in between reading this one and writing plane.json beside it.
  with held_zoo(zoo, "loss-plane analysis") as held:
    zoo = held.at_precision(precision)
    directory, config, model = zoo.directory, zoo.config, zoo.model
    ids = [int(k) for k in models]
    usable = list(zoo.usable)
    if len(ids) != 3 or len(set(ids)) != 3 or not set(ids) <= set(usable):
      raise LmcError(f"--models must name three different usable models of {directory}, got "
                     f"{','.join(map(str, ids))} (usable: {usable[:10]}"
                     f"{'...' if len(usable) > 10 else ''}).")
    if resolution < 2:
      raise LmcError(f"--resolution must be >= 2, got {resolution}.")
    data = zoo.dataset(data_dir)
    a, b, c = (zoo.member(k) for k in ids)
    spec = zoo.spec
    key = jax.random.key(seed)
    b_al = apply_permutation(spec, weight_matching(key, spec, a, b, max_iter).perm, b)
    c_al = apply_permutation(spec, weight_matching(key, spec, a, c, max_iter).perm, c)
    grids = [plane_grid(model, a, b, c, data.x_test, data.y_test, resolution, margin),
             plane_grid(model, a, b_al, c_al, data.x_test, data.y_test, resolution, margin)]
    plane = PlaneRecord(ids, grids[0], grids[1], "test", precision, package_versions())
    atomic_write_json(directory / PLANE_JSON, plane.to_json())
    return PlaneResult(ids, grids[0], grids[1], zoo.record.data_name, config.model.hidden[0])
