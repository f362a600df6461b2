"""The multilayer perceptrons of the study, as Flax Linen modules.

A model maps inputs `(batch, d_in)` to logits `(batch, d_out)`. `d_out == 1` means one
logit with sigmoid binary cross-entropy (Moons); otherwise softmax cross-entropy.
Hidden layer `i` is `Dense_i` (+ `LayerNorm_i` when enabled); the readout is
`Dense_{len(hidden)}`. These names are what `PermutationSpec` and `params.npz` use.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.errors import LazyInitError

from lmc_jax.config import ACTIVATIONS, INITS, LAYERNORM_POSITIONS
from lmc_jax.errors import LmcError
from lmc_jax.nn import initializers as inits
from lmc_jax.nn.forward import LinearFirstLayer
from lmc_jax.nn.precision import check_precision, dot_general_for


def initializers(init: str, fan_in: int):
  """(kernel_init, bias_init) for a Dense layer with `fan_in` inputs (`nn.initializers`:
  Flax's numbers, drawn with a compile per size class rather than per shape).

  default: Flax's own (LeCun normal kernel, zero bias).
  pytorch: torch.nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for kernel and
    bias; what the study's code used for its zoos.
  kaiming_normal / kaiming_uniform: He et al. with the ReLU gain sqrt(2), fan-in mode,
    zero bias (Flax's he_normal, a normal truncated at 2 std and rescaled, / he_uniform).
  kaiming_normal_torch_bias / kaiming_uniform_torch_bias: the study's section-5.2 code,
    torch.nn.init.kaiming_normal_ / kaiming_uniform_ on the weight only (a plain normal
    with std sqrt(2 / fan_in) / U(+-sqrt(6 / fan_in))), the bias left at torch.nn.Linear's
    default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  """
  torch_bias = inits.torch_uniform(fan_in)
  if init == "default":
    return inits.lecun_normal(), nn.initializers.zeros_init()
  if init == "pytorch":
    return torch_bias, torch_bias
  if init == "kaiming_normal":
    return inits.he_normal(), nn.initializers.zeros_init()
  if init == "kaiming_uniform":
    return inits.he_uniform(), nn.initializers.zeros_init()
  if init == "kaiming_normal_torch_bias":
    return inits.variance_scaling(2.0, "fan_in", "normal"), torch_bias
  if init == "kaiming_uniform_torch_bias":
    return inits.variance_scaling(2.0, "fan_in", "uniform"), torch_bias
  raise LmcError(f"Unknown init {init!r}; use one of {', '.join(INITS)}.")


ACTIVATION_FNS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu}


class MLP(nn.Module):
  """Dense -> ReLU (-> LayerNorm) per hidden layer, then a Dense readout (another
  activation in place of ReLU with `activation`).

  Attributes:
    hidden: widths of the hidden layers, e.g. (512,) for Moons or (w, w, w) for MNIST.
    d_out: number of logits (1 for binary problems).
    layernorm: 'none', 'before_relu' (Linear -> LayerNorm -> ReLU, the order that
      reproduces the study's MNIST table; the MNIST and CIFAR-10 default) or 'after_relu'
      (Linear -> ReLU -> LayerNorm, the study's published code, which collapses many narrow
      nets: a layer whose ReLUs are all off hands LayerNorm a constant).
    init_scheme: one of INITS (named so as not to shadow `Module.init`).
    layernorm_eps: LayerNorm's epsilon (Flax's default 1e-6; torch's nn.LayerNorm 1e-5).
    precision: 'fp32', or 'bf16' for bfloat16 matmul inputs with float32 accumulation and
      everything else float32 (`nn.precision`).
    activation: one of ACTIVATIONS (relu, tanh, gelu).
  """
  hidden: Sequence[int]
  d_out: int
  layernorm: str = "none"
  init_scheme: str = "pytorch"
  layernorm_eps: float = 1e-6
  precision: str = "fp32"
  activation: str = "relu"

  @nn.compact
  def __call__(self, x, preactivation0=None):
    """Logits `(n, d_out)` of inputs `x` `(n, d_in)`. `preactivation0` `(n, hidden[0])`, if
    given, is used as the output of `Dense_0` instead of computing it (the pair sweep
    interpolates it, since it is linear in the first layer's parameters)."""
    fan_in = x.shape[-1]
    dot = dot_general_for(self.precision)
    for i, width in enumerate(self.hidden):
      k_init, b_init = initializers(self.init_scheme, fan_in)
      if i == 0 and preactivation0 is not None:
        x = preactivation0
      else:
        x = nn.Dense(width, kernel_init=k_init, bias_init=b_init, dot_general=dot,
                     name=f"Dense_{i}")(x)
      if self.layernorm == "before_relu":
        x = nn.LayerNorm(epsilon=self.layernorm_eps, name=f"LayerNorm_{i}")(x)
      x = ACTIVATION_FNS[self.activation](x)
      if self.layernorm == "after_relu":
        x = nn.LayerNorm(epsilon=self.layernorm_eps, name=f"LayerNorm_{i}")(x)
      fan_in = width
    k_init, b_init = initializers(self.init_scheme, fan_in)
    return nn.Dense(self.d_out, kernel_init=k_init, bias_init=b_init, dot_general=dot,
                    name=f"Dense_{len(self.hidden)}")(x)

  def linear_first_layer(self) -> LinearFirstLayer:
    """`Dense_0` reads the raw inputs and `preactivation0` takes its output (see
    `nn.forward.linear_first_layer`)."""
    return LinearFirstLayer(("params", "Dense_0", "kernel"), ("params", "Dense_0", "bias"),
                            self.precision, "preactivation0")


def make_mlp(hidden: Sequence[int], d_out: int, layernorm: str = "none",
             init: str = "pytorch", layernorm_eps: float = 1e-6, precision: str = "fp32",
             activation: str = "relu") -> MLP:
  """Builds an MLP after checking its arguments, with a clear error for bad ones."""
  hidden = tuple(int(w) for w in hidden)
  if not hidden:
    raise LmcError("The network needs at least one hidden layer; pass e.g. --width=8.")
  if min(hidden) < 1:
    raise LmcError(f"Hidden widths {list(hidden)} include one below 1; every width must be >= 1.")
  if layernorm not in LAYERNORM_POSITIONS:
    raise LmcError(f"Unknown layernorm position {layernorm!r}; use one of "
                   f"{', '.join(LAYERNORM_POSITIONS)}.")
  initializers(init, 1)  # validates the name
  if activation not in ACTIVATIONS:
    raise LmcError(f"Unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}.")
  layernorm_eps = float(layernorm_eps)
  if not (math.isfinite(layernorm_eps) and layernorm_eps > 0):
    raise LmcError(f"layernorm_eps must be finite and > 0, got {layernorm_eps}; pass e.g. "
                   "1e-5 (PyTorch's) or 1e-6 (Flax's).")
  return MLP(hidden=hidden, d_out=int(d_out), layernorm=layernorm, init_scheme=init,
             layernorm_eps=layernorm_eps, precision=check_precision(precision),
             activation=activation)


def is_one_hidden_layer_mlp(model) -> bool:
  """True for the study's MLP with one hidden layer and no LayerNorm (its Moons nets: what
  the unit merging of `analysis.unit_merging` handles)."""
  return isinstance(model, MLP) and len(model.hidden) == 1 and model.layernorm == "none"


class OneHiddenLayer(NamedTuple):
  """The params of the study's MLP with one hidden layer and no LayerNorm, as its four
  arrays (what the unit merging of the study's section 5.1 works on)."""
  kernel_in: np.ndarray  # (d_in, w)
  bias_in: np.ndarray  # (w,)
  kernel_out: np.ndarray  # (w, d_out)
  bias_out: np.ndarray  # (d_out,)

  @classmethod
  def of(cls, params) -> "OneHiddenLayer":
    """The four arrays of a params dict (numpy), or an LmcError for another network."""
    if set(params) != {"Dense_0", "Dense_1"}:
      raise LmcError(f"Neuron merging handles the MLP with one hidden layer and no LayerNorm "
                     f"(Dense_0, Dense_1); got layers {sorted(params)}.")
    return cls(*(np.asarray(params[layer][leaf]) for layer in ("Dense_0", "Dense_1")
                 for leaf in ("kernel", "bias")))

  def params(self) -> dict:
    """The params dict of these arrays."""
    return {"Dense_0": {"kernel": self.kernel_in, "bias": self.bias_in},
            "Dense_1": {"kernel": self.kernel_out, "bias": self.bias_out}}


def init_variables(model, key, d_in: int) -> dict:
  """One model's whole variables dict (`params`, and `batch_stats` where it has them), as a
  zoo stores it, for inputs of `d_in` features.

  The initializers run and the forward pass is only traced (`Module.lazy_init`): the same
  variables as `Module.init` on zeros, without compiling and running every layer on them. A
  module whose variables, or Python branches, depend on the input's values is run on zeros
  (`Module.init`)."""
  try:
    return dict(model.lazy_init(key, jax.ShapeDtypeStruct((1, d_in), jnp.float32)))
  except (LazyInitError, jax.errors.ConcretizationTypeError):
    return dict(model.init(key, jnp.zeros((1, d_in), jnp.float32)))


def abstract_variables(model, d_in: int):
  """The shapes and dtypes of `init_variables(model, key, d_in)` (`jax.ShapeDtypeStruct`
  leaves), traced once per (model, d_in) where the module is hashable: a zoo's memory
  estimate, its loader and its spec each ask for them."""
  try:
    hash(model)
  except TypeError:  # a module with unhashable fields: traced every time
    return _traced_variables(model, d_in)
  return jax.tree_util.tree_map(lambda s: s, _cached_variables(model, d_in))  # own dicts


def _traced_variables(model, d_in: int):
  return jax.eval_shape(lambda: init_variables(model, jax.random.key(0), d_in))


_cached_variables = functools.lru_cache(maxsize=32)(_traced_variables)


def loss_and_correct(logits, labels):
  """Per-sample loss and correctness.

  Args:
    logits: (n, d_out) float.
    labels: (n,) int class indices (0/1 when d_out == 1).
  Returns:
    loss (n,) in nats, correct (n,) float 0/1.
  """
  if logits.shape[-1] == 1:
    z = logits[:, 0]
    y = labels.astype(z.dtype)
    # log(1 + exp(-|z|)) form: stable for large logits of either sign.
    loss = jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))
    correct = ((z > 0).astype(jnp.int32) == labels).astype(z.dtype)
  else:
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    correct = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
  return loss, correct


def mlp_matmul_flops(params_one) -> int:
  """Multiply-adds x 2 of one forward pass of one sample through one net (kernels only)."""
  return 2 * sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params_one)
                 if leaf.ndim == 2)


def num_params(params_one) -> int:
  """Parameters of one net."""
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params_one))
