"""Transformers for zoos: a Vision Transformer for image datasets and a small decoder for
token datasets (`modular_addition`), as Flax Linen modules on the library's flat rows.

Both are pre-norm stacks of `Block`s over a residual stream of `embed` features:
  y = LayerNorm_0(h); h = h + MultiHeadDotProductAttention(y, y)  (`attn`)
  y = LayerNorm_1(h); h = h + Dense_1(gelu(Dense_0(y)))           (MLP of MLP_RATIO * embed)
then a final `LayerNorm_final` and a Dense readout `head`.

With `norm='rms'` every norm is instead an RMSNorm without a scale (`RMSNorm_0`,
`RMSNorm_1`, `RMSNorm_final`: `y = h / sqrt(mean(h^2) + eps)`, no parameters). A per-feature
scale before a linear layer is redundant (it folds into that layer's kernel), and without
it the stream has an exact rotation symmetry: for any orthogonal `Q` `(embed, embed)`,
`h -> Q h` with every weight writing the stream (embedding, positions, `attn/out`,
`Dense_1`, their biases) rotated by `Q` and every weight reading it (`query`, `key`,
`value`, `Dense_0`, `head` kernels) by `Q` on their input axis leaves the logits unchanged,
since `||Q h|| = ||h||`. LayerNorm has no such symmetry: it subtracts the mean, which only
maps that keep the all-ones direction commute with.

`ViT` reads flat images `(n, H*W*C)` in HWC order, cuts them into `patch` x `patch` patches
by a strided convolution `embed` (kernel `(patch, patch, C, embed)`), adds learned
positions `pos` `(tokens, embed)`, and pools by the mean over patches (`pool='mean'`) or
reads a learned class token `cls` `(1, 1, embed)` put first (`pool='cls'`).

`Decoder` reads rows of token ids stored as floats `(n, T)` (ids below `vocab`), embeds them
(`embed`, an `nn.Embed` of `(vocab, embed)`), adds `pos` `(T, embed)`, runs causal blocks
and predicts from the last position. One position (the class token, the last token) is
read as a sum over positions weighted by a constant one-hot (`read_position`), a
contraction `derive_spec` follows today (a slice of the position axis it does not yet).

Layer names (paths of `params.npz` and of a spec): `embed`, `pos`, `cls`, `Block_i/` with
`LayerNorm_0`, `attn/{query,key,value,out}`, `LayerNorm_1`, `Dense_0`, `Dense_1`, then
`LayerNorm_final`, `head`. Weights use Flax's initializers (positions and class token
normal with std 0.02).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lmc_jax.config import POOLS, ConfigError
from lmc_jax.nn import initializers as inits

EMBED_PER_WIDTH = 32  # residual-stream features per unit of the width multiplier
MLP_RATIO = 2  # hidden units of each block's MLP per stream feature
# Flax's defaults for nn.Dense, nn.Conv, attention and nn.Embed, drawn per size class.
KERNEL_INIT = inits.lecun_normal()
EMBED_INIT = inits.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class Block(nn.Module):
  """One pre-norm transformer block on tokens `(n, T, embed)` -> `(n, T, embed)`."""
  heads: int
  causal: bool = False
  norm: str = "layernorm"  # or 'rms' (see the module's docstring)

  @nn.compact
  def __call__(self, h):
    e = h.shape[-1]
    y = _norm(self.norm, "0")(h)
    mask = nn.make_causal_mask(jnp.ones(h.shape[:2])) if self.causal else None
    h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=e, out_features=e,
                                            kernel_init=KERNEL_INIT,
                                            name="attn")(y, y, mask=mask)
    y = _norm(self.norm, "1")(h)
    hidden = nn.Dense(MLP_RATIO * e, kernel_init=KERNEL_INIT, name="Dense_0")(y)
    return h + nn.Dense(e, kernel_init=KERNEL_INIT, name="Dense_1")(nn.gelu(hidden))


NORMS = ("layernorm", "rms")


def _norm(kind: str, suffix: str) -> nn.Module:
  """The stream's norm `LayerNorm_<suffix>`, or a scale-free `RMSNorm_<suffix>`."""
  if kind == "rms":
    return nn.RMSNorm(use_scale=False, name=f"RMSNorm_{suffix}")
  return nn.LayerNorm(name=f"LayerNorm_{suffix}")


def _positions(name: str, shape, module: nn.Module):
  return module.param(name, inits.normal(0.02), shape)


def read_position(h, i: int):
  """`h[:, i]` of tokens `(n, T, e)` -> `(n, e)`, as a contraction with a constant one-hot:
  `derive_spec` follows it today, where a slice of an axis that moves with `pos` it refuses."""
  return jnp.einsum("ntd,t->nd", h, np.eye(h.shape[1], dtype=np.float32)[i])


def _stack(h, depth: int, heads: int, causal: bool, norm: str = "layernorm"):
  for i in range(depth):
    h = Block(heads, causal, norm, name=f"Block_{i}")(h)
  return _norm(norm, "final")(h)


class ViT(nn.Module):
  """Vision Transformer: logits `(n, num_classes)` of flat images `(n, H*W*C)`.

  Attributes: width (the stream has EMBED_PER_WIDTH * width features), depth (blocks),
  heads, patch (side of a square patch, dividing H and W), pool ('mean' or 'cls'),
  num_classes, image_shape (H, W, C).
  """
  width: int = 1
  depth: int = 1
  heads: int = 2
  patch: int = 7
  pool: str = "mean"
  num_classes: int = 10
  image_shape: Sequence[int] = (28, 28, 1)

  @nn.compact
  def __call__(self, x, train: bool = False):
    e, p = EMBED_PER_WIDTH * self.width, self.patch
    h = x.reshape(x.shape[:-1] + tuple(self.image_shape))
    h = nn.Conv(e, (p, p), strides=(p, p), padding="VALID", kernel_init=KERNEL_INIT,
                name="embed")(h)
    h = h.reshape(h.shape[0], -1, e)  # (n, patches, e)
    if self.pool == "cls":
      cls = _positions("cls", (1, 1, e), self)
      h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, e)), h], axis=1)
    h = h + _positions("pos", h.shape[1:], self)
    h = _stack(h, self.depth, self.heads, causal=False)
    h = read_position(h, 0) if self.pool == "cls" else h.mean(1)
    return nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, name="head")(h)


class Decoder(nn.Module):
  """Causal token transformer: logits `(n, num_classes)` at the last position of token rows
  `(n, T)` (float ids below `vocab`).

  Attributes: width, depth, heads (as ViT's), vocab, num_classes, norm ('layernorm', or
  'rms': scale-free RMSNorm, whose stream rotates exactly).
  """
  width: int = 1
  depth: int = 1
  heads: int = 4
  vocab: int = 98
  num_classes: int = 97
  norm: str = "layernorm"

  @nn.compact
  def __call__(self, x, train: bool = False):
    e, t = EMBED_PER_WIDTH * self.width, x.shape[-1]
    h = nn.Embed(self.vocab, e, embedding_init=EMBED_INIT, name="embed")(x.astype(jnp.int32))
    h = h + _positions("pos", (t, e), self)
    h = _stack(h, self.depth, self.heads, causal=True, norm=self.norm)
    return nn.Dense(self.num_classes, kernel_init=KERNEL_INIT, name="head")(read_position(h, -1))


def _check_heads(width: int, heads: int) -> None:
  e = EMBED_PER_WIDTH * int(width)
  if int(width) < 1:
    raise ConfigError("model.hidden", f"holds width multiplier {width}; pass a width of at "
                      "least 1")
  if e % int(heads):
    raise ConfigError("model.heads", f"is {heads}, which does not divide the embedding width "
                      f"{e} ({EMBED_PER_WIDTH} x --width {width}); pass heads dividing it")


def make_vit(width: int, depth: int, heads: int, patch: int, pool: str, num_classes: int,
             image_shape) -> ViT:
  """A ViT after checking that heads divide the width and the patch the image."""
  _check_heads(width, heads)
  h, w, _ = (int(s) for s in image_shape)
  if h % int(patch) or w % int(patch):
    raise ConfigError("model.patch", f"is {patch}, which does not divide the {h}x{w} image; "
                      "pass a patch dividing both sides (7 or 14 for MNIST, 4 or 8 for "
                      "CIFAR-10)")
  if pool not in POOLS:
    raise ConfigError("model.pool", f"must be one of {', '.join(POOLS)}, got {pool!r}")
  return ViT(int(width), int(depth), int(heads), int(patch), pool, int(num_classes),
             tuple(int(s) for s in image_shape))


def make_decoder(width: int, depth: int, heads: int, vocab: int, num_classes: int,
                 norm: str = "layernorm") -> Decoder:
  """A Decoder after checking that heads divide the width; `norm` 'rms' for the scale-free
  RMSNorm stream that rotates exactly."""
  _check_heads(width, heads)
  if norm not in NORMS:
    raise ValueError(f"Decoder norm must be one of {', '.join(NORMS)}, got {norm!r}.")
  return Decoder(int(width), int(depth), int(heads), int(vocab), int(num_classes), norm)
