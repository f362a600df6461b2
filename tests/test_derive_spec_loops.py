"""`derive_spec` through loops: `nn.RNN` over GRU and LSTM cells (and both, bidirectional),
`nn.scan` of a cell over time, `nn.scan` over stacked layers, a `lax.fori_loop` and a
`lax.cond`; a scan stepping along hidden units is refused by name. Oracles: partitions
worked out by hand, and the outputs under each group alone."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lmc_jax import LmcError, check_spec, derive_spec
from lmc_jax.nn import random_draws
from lmc_jax.tree_utils import flatten
from tests.test_derive_spec import partition
from tests.test_derive_spec_more import _each_group_alone_is_a_symmetry, _randomised


class RecurrentNet(nn.Module):
  cell: str = "gru"

  @nn.compact
  def __call__(self, x):
    cell = nn.GRUCell(5, name="cell") if self.cell == "gru" else nn.LSTMCell(5, name="cell")
    h = nn.RNN(cell, name="rnn")(x)
    return nn.Dense(3, name="head")(h[:, -1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_cells_move_their_units_with_the_carry(cell):
  model = RecurrentNet(cell)
  x = random_draws.normal(jax.random.key(0), (2, 4, 3))  # (batch, time, features)
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  # By hand: every gate's kernel makes the hidden units (axis 1), every bias holds them, the
  # recurrent kernels (h*) also read them (axis 0), and the head reads the last step's; an
  # LSTM's cell state c and output h are the same units (c mixes into h elementwise).
  units = _cell_units(variables, "cell") | {("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(units)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


def _cell_units(variables, cell: str):
  """By hand, as above: the units of the cell under `params/{cell}/`."""
  units = set()
  for path, leaf in flatten(variables).items():
    if path.startswith(f"params/{cell}/"):
      units |= {(path, leaf.ndim - 1)}
      if f"{cell}/h" in path and path.endswith("kernel"):
        units |= {(path, 0)}
  return units


class BidirectionalNet(nn.Module):
  """A GRU forwards and an LSTM of another width backwards (the time axis flipped),
  their outputs concatenated: blocks of the head's kernel."""
  @nn.compact
  def __call__(self, x):
    h = nn.Bidirectional(nn.RNN(nn.GRUCell(5)), nn.RNN(nn.LSTMCell(4)), name="bi")(x)
    return nn.Dense(3, name="head")(h.mean(1))


def test_a_bidirectional_rnn_of_two_cells():
  model = BidirectionalNet()
  x = random_draws.normal(jax.random.key(0), (2, 4, 3))
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  assert spec.blocks == {"params/head/kernel": (0, (5, 4))}
  gru = _cell_units(variables, "GRUCell_0") | {("params/head/kernel[0]", 0)}
  lstm = _cell_units(variables, "LSTMCell_0") | {("params/head/kernel[1]", 0)}
  assert len(gru) == 14 and len(lstm) == 17
  assert partition(spec) == {frozenset(gru), frozenset(lstm)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class TanhCell(nn.Module):
  @nn.compact
  def __call__(self, h, x):
    h = jnp.tanh(nn.Dense(6, name="ih")(x) + nn.Dense(6, use_bias=False, name="hh")(h))
    return h, nn.relu(nn.Dense(4, name="out")(h))


class ScannedCell(nn.Module):
  @nn.compact
  def __call__(self, x):
    scan = nn.scan(TanhCell, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    h, ys = scan(name="cell")(jnp.zeros((x.shape[0], 6)), x)
    return nn.Dense(3, name="from_y")(ys.mean(1)) + nn.Dense(3, name="from_h")(h)


def test_a_cell_scanned_over_time():
  model = ScannedCell()
  x = random_draws.normal(jax.random.key(0), (2, 5, 3))
  variables = _randomised(model.init(jax.random.key(1), x))
  spec = derive_spec(model, variables, x)
  c = "params/cell/"
  hidden = {(c + "ih/kernel", 1), (c + "ih/bias", 0), (c + "hh/kernel", 0), (c + "hh/kernel", 1),
            (c + "out/kernel", 0), ("params/from_h/kernel", 0)}
  out = {(c + "out/kernel", 1), (c + "out/bias", 0), ("params/from_y/kernel", 0)}
  assert partition(spec) == {frozenset(hidden), frozenset(out)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class Block(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return h + nn.Dense(4, name="down")(nn.relu(nn.Dense(8, name="up")(h))), None


class StackedLayers(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(4, name="embed")(x)
    stack = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    h, _ = stack(name="blocks")(h, None)
    return nn.Dense(2, name="head")(nn.relu(h))


def test_stacked_layers_scanned_share_each_permutation_along_the_layer_axis():
  model = StackedLayers()
  x = random_draws.normal(jax.random.key(0), (3, 5))
  variables = _randomised(model.init(jax.random.key(1), x))
  b = "params/blocks/"
  assert variables["params"]["blocks"]["up"]["kernel"].shape == (3, 4, 8)
  spec = derive_spec(model, variables, x)
  # The layer axis (0 of every stacked leaf) is an index: it can not move, and the hidden
  # units of every layer take one permutation (the form a stacked leaf can hold).
  stream = {("params/embed/kernel", 1), ("params/embed/bias", 0), (b + "up/kernel", 1),
            (b + "down/kernel", 2), (b + "down/bias", 1), ("params/head/kernel", 0)}
  inner = {(b + "up/kernel", 2), (b + "up/bias", 1), (b + "down/kernel", 1)}
  assert partition(spec) == {frozenset(stream), frozenset(inner)}
  assert check_spec(model, variables, spec, x) < 1e-5
  _each_group_alone_is_a_symmetry(model, variables, spec, x)


class LoopAndBranch(nn.Module):
  """A weight-tied layer applied three times by `fori_loop`, then one of two layers by a
  `cond` on the data."""
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(6, name="d0")(x))
    tied = nn.Dense(6, name="tied")
    tied(h)  # created outside the loop
    w = self.variables["params"]["tied"]
    step = lambda _, h: jnp.tanh(h @ w["kernel"] + w["bias"])
    h = jax.lax.fori_loop(0, jnp.int32(3) + (x[0, 0] > 9).astype(jnp.int32), step, h)
    a, b = nn.Dense(5, name="a"), nn.Dense(5, name="b")
    a(h), b(h)
    va, vb = self.variables["params"]["a"], self.variables["params"]["b"]
    h = jax.lax.cond(x[0, 0] > 0, lambda h: h @ va["kernel"] + va["bias"],
                     lambda h: h @ vb["kernel"] + vb["bias"], h)
    return nn.Dense(2, name="head")(nn.relu(h))


def test_a_while_loop_and_a_cond():
  model = LoopAndBranch()
  x = random_draws.normal(jax.random.key(0), (3, 4))
  variables = _randomised(model.init(jax.random.key(1), x))
  assert "while" in str(jax.make_jaxpr(lambda v: model.apply(v, x))(variables))
  spec = derive_spec(model, variables, x)
  six = {("params/d0/kernel", 1), ("params/d0/bias", 0), ("params/tied/kernel", 0),
         ("params/tied/kernel", 1), ("params/tied/bias", 0), ("params/a/kernel", 0),
         ("params/b/kernel", 0)}
  five = {("params/a/kernel", 1), ("params/a/bias", 0), ("params/b/kernel", 1),
          ("params/b/bias", 0), ("params/head/kernel", 0)}
  assert partition(spec) == {frozenset(six), frozenset(five)}
  for sign in (1, -1):  # both branches taken
    assert check_spec(model, variables, spec, sign * jnp.abs(x)) < 1e-5


class ScanOverUnits(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(6, name="inner")(x))
    _, ys = jax.lax.scan(lambda c, u: (c + u, c * u), jnp.zeros(h.shape[0]), h.T)
    return nn.Dense(2, name="head")(ys.T)


def test_a_scan_stepping_along_hidden_units_is_refused_by_name():
  model = ScanOverUnits()
  x = random_draws.normal(jax.random.key(0), (3, 4))
  variables = model.init(jax.random.key(1), x)
  with pytest.raises(LmcError, match=r"can not follow `scan`.*params/inner/kernel.*by hand"):
    derive_spec(model, variables, x)
