"""What `derive_spec` still can not follow stops it with one sentence naming the op and the
variables whose units it touches (the other refusals sit beside what they refuse: slices
and argmax in test_derive_spec, flips, paddings and gathers of hidden units in
test_derive_spec_positions, a scan along hidden units in test_derive_spec_loops, blocks
flattened in test_derive_spec_blocks); with `strict=False` the units are left unpermuted
and the rest still derived (oracle: the partition by hand, and the outputs unchanged)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lmc_jax import LmcError, check_spec, derive_spec
from lmc_jax.nn import random_draws
from tests.test_derive_spec import partition


class Refused(nn.Module):
  """A hidden layer of 8 units (`inner`) read by `op`, then a head of 2; the second layer
  `mid` (5 units) is followable either way."""
  op: str

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(8, name="inner")(x))
    if self.op == "cumsum":
      h = jnp.cumsum(h, -1)
    elif self.op == "sort":
      h = jnp.sort(h, -1)
    elif self.op == "reduce_window_max":  # max pooling over units
      h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2), (1, 2), "VALID")
    elif self.op == "reshape":  # the units read as (2, 4) and as (4, 2)
      h = jnp.concatenate([h.reshape(-1, 2, 4).sum(1), h.reshape(-1, 4, 2).sum(1)], -1)
    elif self.op == "concatenate":  # blocks on both axes of one square weight
      w = self.param("w", nn.initializers.normal(0.3), (14, 14))
      h = jnp.concatenate([h, nn.relu(nn.Dense(6, name="side")(h))], -1)
      h = h @ w + h
    h = nn.relu(nn.Dense(5, name="mid")(h))
    return nn.Dense(2, name="head")(h)


MID = {("params/mid/kernel", 1), ("params/mid/bias", 0), ("params/head/kernel", 0)}


@pytest.mark.parametrize("op, why, named", [
    ("cumsum", "cumsum", "inner"), ("sort", "sort", "inner"),
    ("reduce_window_max", "reduce_window_max", "inner"),
    ("reshape", "reshape (one axis flattened two ways)", "inner"),
    ("concatenate", "concatenate (blocks on two axes of one variable)", "w")])
def test_what_it_can_not_follow_is_named_in_one_sentence(op, why, named, caplog):
  model, x = Refused(op), random_draws.normal(jax.random.key(0), (3, 4))
  variables = model.init(jax.random.key(1), x)
  with pytest.raises(LmcError) as info:
    derive_spec(model, variables, x)
  message = str(info.value)
  assert message.count(". ") == 0 and message.endswith(".")  # one sentence
  assert f"can not follow `{why}`" in message, message
  assert f"params/{named}" in message and "by hand" in message
  spec = derive_spec(model, variables, x, strict=False)
  assert partition(spec) == {frozenset(MID)}
  assert "leaves units unpermuted" in caplog.text
  assert check_spec(model, variables, spec, random_draws.normal(jax.random.key(2), (5, 4))) < 1e-5
