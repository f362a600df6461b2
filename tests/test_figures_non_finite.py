"""A zoo whose lines hold NaN, infinite or huge losses still gets every figure: the
non-finite values are left out and counted, not a crash after the JSON is written."""
from pathlib import Path

import numpy as np

from lmc_jax.analysis.barrier import ZooBarriers
from lmc_jax.barrier_records import BarrierResult, MethodEntry
from lmc_jax.config import default_config
from lmc_jax.lmc.interpolation import Curves
from lmc_jax.lmc.measures import curve_set, single_linkage_order
from lmc_jax.report.connectivity import report_family
from tests.helpers import zoo_record


def _record(width, loss):
  alphas = np.linspace(0, 1, loss.shape[1])
  pairs = np.array([[0, 1], [0, 2], [1, 2]])
  curves = curve_set(Curves(alphas, pairs, loss, np.full_like(loss, 0.5)))
  result = BarrierResult(alphas, curves, (MethodEntry("weight", curves=curves),), reference=0)
  return ZooBarriers(Path("."), zoo_record(default_config("moons", hidden=(width,))), result)


def test_every_figure_is_drawn_around_non_finite_losses(tmp_path):
  rng = np.random.default_rng(0)
  records = []
  for width in (2, 4):
    loss = rng.uniform(0.1, 1.0, (3, 11))
    loss[1, 5], loss[2, 3], loss[0, 7] = np.nan, np.inf, 1e30
    records.append(_record(width, loss))
  report = report_family("moons", records, tmp_path)
  assert len(report.paths) == 6
  for path in report.paths:
    assert Path(path).stat().st_size > 1000, path


def test_clustering_order_takes_infinite_and_missing_distances():
  m = np.array([[0, 1, np.inf], [1, 0, np.nan], [np.inf, np.nan, 0]], float)
  assert sorted(single_linkage_order(m)) == [0, 1, 2]
