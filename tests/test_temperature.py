"""Temperature calibration: the fitted temperature against a one-dimensional search written
here in numpy, the calibrated sweep against a zoo's own curves, and barrier.json keeping the
calibrated curves beside the raw ones (refused where no training rows were held out)."""
import json

import jax
import numpy as np
import pytest

from lmc_jax import LmcError
from lmc_jax.analysis.barrier import analyse_zoo, check_calibration, read_barrier_json
from lmc_jax.config import default_config
from lmc_jax.data.datasets import held_out_rows, load_dataset
from lmc_jax.lmc.interpolation import interpolate, pair_sweep
from lmc_jax.lmc.temperature import calibrated_sweep, fit_temperature
from lmc_jax.nn.architectures import model_for
from lmc_jax.zoo.io import save_zoo
from lmc_jax.zoo.training import train_zoo
from tests.helpers.cli import snapshot


def numpy_loss(z, y, t):
  """Mean cross-entropy of logits `z / t` (sigmoid for one logit), float64."""
  s = np.asarray(z, np.float64) / t
  if s.shape[1] == 1:
    return float(np.mean(np.logaddexp(0.0, s[:, 0]) - s[:, 0] * y))
  m = s.max(1, keepdims=True)
  lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
  return float(np.mean(lse - s[np.arange(len(y)), y]))


def numpy_search(z, y):
  """The best temperature by a log-spaced grid, then a ternary search in the best cell."""
  grid = np.exp(np.linspace(np.log(1e-2), np.log(1e2), 2001))
  k = int(np.argmin([numpy_loss(z, y, t) for t in grid]))
  lo, hi = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, len(grid) - 1)])
  for _ in range(100):
    a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
    if numpy_loss(z, y, np.exp(a)) <= numpy_loss(z, y, np.exp(b)):
      hi = b
    else:
      lo = a
  return float(np.exp((lo + hi) / 2))


@pytest.mark.parametrize("classes, scale", [(1, 3.0), (4, 3.0), (4, 0.2)])
def test_fitted_temperature_equals_a_numpy_search(classes, scale):
  rng = np.random.default_rng(classes)
  y = rng.integers(0, max(classes, 2), 300)
  z = rng.normal(size=(300, classes)) * scale
  if classes == 1:
    z[:, 0] += np.where(y == 1, 1.0, -1.0) * scale
  else:
    z[np.arange(300), y] += scale  # over- or under-confident, depending on the scale
  # One compiled program (not one per op); device_put: no program per input shape.
  t = float(jax.jit(fit_temperature)(jax.device_put(z.astype(np.float32)), jax.device_put(y)))
  want = numpy_search(z.astype(np.float32), y)
  assert abs(t - want) / want < 2e-3
  assert numpy_loss(z, y, t) <= numpy_loss(z, y, want) + 1e-6


@pytest.fixture(scope="module")
def held_out_zoo(tmp_path_factory):
  """A Moons zoo of 3 nets trained on 192 of 256 training rows (64 held out)."""
  directory = tmp_path_factory.mktemp("zoo") / "moons_w8"
  config = default_config("moons", hidden=(8,), num_models=3, epochs=3, n_train=256,
                          n_test=128, train_subset=192)
  zoo = train_zoo(config, load_dataset(config), log=None)
  save_zoo(directory, config, zoo.params, zoo.metrics, history=zoo.history)
  return directory, config, zoo


def test_calibrated_sweep_fits_each_point_as_a_numpy_search_does(held_out_zoo):
  _, config, zoo = held_out_zoo
  data, model = load_dataset(config), model_for(config)
  x_fit, y_fit = held_out_rows(config)
  assert len(y_fit) == 64 and check_calibration(config, "zoo") == 64
  pairs, alphas = np.array([[0, 1], [1, 2]]), np.linspace(0, 1, 5)
  found = calibrated_sweep(model, zoo.params, pairs, alphas, x_fit, y_fit, data.x_test,
                           data.y_test)
  plain = pair_sweep(model, zoo.params, pairs, data.x_test, data.y_test, alphas)
  np.testing.assert_allclose(found.raw_loss, plain.loss, atol=1e-5)
  np.testing.assert_allclose(found.curves.acc, plain.acc, atol=1e-6)
  # The ends taken and mixed by numpy, applied by one compiled program: no program per op.
  ends = [jax.tree_util.tree_map(lambda v, k=k: np.asarray(v)[k], zoo.params) for k in (1, 2)]
  mixed, apply = interpolate(*ends, 0.75), jax.jit(model.apply)
  logits = np.asarray(apply(mixed, x_fit))
  t = numpy_search(logits, y_fit)
  assert abs(found.temperature[1, 3] - t) / t < 2e-3
  test_logits = np.asarray(apply(mixed, data.x_test))
  assert abs(found.curves.loss[1, 3] - numpy_loss(test_logits, data.y_test, t)) < 1e-4


def test_barrier_json_keeps_calibrated_curves_beside_the_raw_ones(held_out_zoo):
  directory, _, _ = held_out_zoo
  result = analyse_zoo(directory, methods=("weight",), calibrate=True)
  for name in ("naive", "weight"):
    cal, raw = result.calibrated(name), result.curves(name)
    assert cal.held_out == 64 and cal.temperature.shape == raw.loss.shape == (3, 11)
    np.testing.assert_allclose(cal.curves.acc, raw.acc)
    assert np.all(cal.temperature > 0)
  doc = json.loads((directory / "barrier.json").read_text())
  assert doc["format"] == 5 and "calibrated" in doc["naive"]
  again = read_barrier_json(directory)
  np.testing.assert_allclose(again.calibrated("weight").curves.loss,
                             result.calibrated("weight").curves.loss)


def test_a_zoo_trained_on_every_row_is_refused_before_anything_is_written(tmp_path):
  config = default_config("moons", hidden=(4,), num_models=2, epochs=1, n_train=64, n_test=32)
  zoo = train_zoo(config, load_dataset(config), log=None)
  save_zoo(tmp_path / "z", config, zoo.params, zoo.metrics, history=zoo.history)
  before = snapshot(tmp_path)
  with pytest.raises(LmcError, match=r"--calibrate_temperature .* trained on all 64; train it "
                     r"with --train_subset below 64"):
    analyse_zoo(tmp_path / "z", calibrate=True)
  assert snapshot(tmp_path) == before
