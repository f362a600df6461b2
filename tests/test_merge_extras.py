"""Merging, the cases test_merging leaves out: REPAIR of a fully zipped MLP reaches, layer
after layer, the statistics a numpy oracle computes from the zip's groups; a BatchNorm
network merged without REPAIR gets running statistics equal to its own batch statistics
(computed here in numpy), not the parents'; an empty Dirichlet part is refused by the zoo
command before anything is written."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from lmc_jax.merging.combine import merge
from lmc_jax.merging.zip import zip_models
from lmc_jax.nn import random_draws
from lmc_jax.symmetry.derive import derive_spec
from lmc_jax.symmetry.spec import apply_permutation, perm_sizes, random_permutation
from tests.helpers import random_params
from tests.helpers.cli import refused, run_cli, snapshot

X = np.asarray(random_draws.normal(jax.random.key(5), (160, 3)), np.float64)


def _stats(h):
  return h.mean(0), h.std(0)


def test_repair_of_a_zipped_network_reaches_the_oracle_statistics():
  model, pa = random_params(jax.random.key(0), (4, 5), d_in=3, d_out=3)
  _, pb = random_params(jax.random.key(1), (4, 5), d_in=3, d_out=3)
  a, b = ({"params": jax.tree_util.tree_map(np.asarray, p)} for p in (pa, pb))
  spec = derive_spec(model, a, X[:1])
  _, zips = zip_models(model, spec, a, b, X)
  got = merge(model, spec, [a, b], method="zip", data=X, repair=True)["params"]

  def dense(p, i, h):
    return h @ np.asarray(p[f"Dense_{i}"]["kernel"], np.float64) + p[f"Dense_{i}"]["bias"]

  parents_h = [X, X]
  h = X
  for i in range(2):  # each hidden layer: a group's target is its members' mean mean and std
    parents_pre = [dense(p["params"], i, ph) for p, ph in zip((a, b), parents_h)]
    stats = [_stats(v) for v in parents_pre]
    pre = dense(got, i, h)
    n = pre.shape[1]
    for g, members in enumerate(zips[f"P_{i}"].groups):
      assert pre[:, g].mean() == pytest.approx(
          np.mean([stats[m // n][0][m % n] for m in members]), abs=1e-4)
      assert pre[:, g].std() == pytest.approx(
          np.mean([stats[m // n][1][m % n] for m in members]), rel=1e-3)
    h = np.maximum(pre, 0)
    parents_h = [np.maximum(v, 0) for v in parents_pre]


class _BatchNormNet(nn.Module):
  """Dense(5) -> BatchNorm -> ReLU -> Dense(2): the smallest BatchNorm network."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(5)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.Dense(2)(nn.relu(x))


def _bn_net(seed):
  model = _BatchNormNet()
  # Only the shapes are read (every leaf is redrawn below): no initializer runs.
  x = jax.ShapeDtypeStruct((1, 3), np.float32)
  variables = jax.eval_shape(model.init, jax.random.key(seed), x)
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.key(seed + 10), len(leaves))
  leaves = [np.asarray(random_draws.uniform(k, v.shape, minval=0.5, maxval=1.5)) for k, v in
            zip(keys, leaves)]  # positive, so that the running variances are variances
  return model, jax.tree_util.tree_unflatten(tree, leaves)


def test_a_merged_batchnorm_network_gets_its_own_statistics():
  model, a = _bn_net(0)
  _, b = _bn_net(1)
  spec = derive_spec(model, a, X[:1])
  merged = merge(model, spec, [a, b], method="naive", data=X)
  p = merged["params"]
  pre = X @ np.asarray(p["Dense_0"]["kernel"], np.float64) + p["Dense_0"]["bias"]
  stats = merged["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(stats["mean"], pre.mean(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], pre.var(0), rtol=1e-4, atol=1e-5)
  mean_of_parents = np.mean([v["batch_stats"]["BatchNorm_0"]["var"] for v in (a, b)], 0)
  assert np.max(np.abs(stats["var"] - mean_of_parents)) > 1e-2
  # a permuted copy merges back to the model, its statistics recomputed on the data
  perm = random_permutation(jax.random.key(2), perm_sizes(spec, a))
  same = merge(model, spec, [a, apply_permutation(spec, perm, a)], method="weight", data=X)
  pa = a["params"]["Dense_0"]
  pre_a = X @ np.asarray(pa["kernel"], np.float64) + pa["bias"]
  np.testing.assert_allclose(same["params"]["Dense_0"]["kernel"], pa["kernel"], atol=1e-6)
  np.testing.assert_allclose(same["batch_stats"]["BatchNorm_0"]["var"], pre_a.var(0), rtol=1e-4)


def test_an_empty_dirichlet_part_is_refused_by_the_zoo_command(tmp_path):
  # moons' 512 training rows: dirichlet:0.01 over 8 parts leaves part 3 without an example
  before = snapshot(tmp_path, folders=True)
  refused(run_cli("zoo", "--dataset=moons", "--train_split=dirichlet:0.01:3/8", "--width=4",
                  "--epochs=1", f"--out={tmp_path / 'runs'}"),
          "dirichlet:0.01:3/8", "holds no training example", "larger ALPHA")
  assert snapshot(tmp_path, folders=True) == before


def test_the_bar_chart_legend_hides_no_bar():
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  from lmc_jax.report.merge_figures import bars_figure
  rows = [(f"net {k}", np.full((3, 3), 0.99)) for k in range(6)]  # every bar at the top
  fig = bars_figure(rows, ["joint", "part 0", "part 1"])
  renderer = FigureCanvasAgg(fig).get_renderer()
  fig.draw(renderer)
  ax = fig.axes[0]
  box = ax.get_legend().get_window_extent(renderer)
  bars = [p.get_window_extent(renderer) for p in ax.patches]
  assert len(bars) == 18
  assert not any(box.overlaps(b) for b in bars)
  inside = ax.get_window_extent(renderer)
  assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 for b in bars)  # no bar cut off
