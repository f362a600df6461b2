"""The standard CIFAR augmentation (pad 4, random crop, random horizontal flip) on flat rows.

Rows are flat images `(b, H*W*C)` in HWC order, as the datasets store them. Padding is
with zeros in that stored, normalised space, i.e. the dataset's mean colour. Everything
is jax.numpy and jittable; for a zoo, `jax.vmap(augment_batch, (0, 0, None))(keys, x,
image_shape)` augments each model's batch `(m, b, d)` with its own key `(m,)`.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmc_jax.errors import LmcError


def augment_choices(key, batch: int, pad: int = 4):
  """The random draws of `augment_batch`: crop offsets `(batch, 2)` int32 (row, column),
  each uniform in 0..2*pad, and flips `(batch,)` bool, each True with probability 1/2."""
  k_crop, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_crop, (batch, 2), 0, 2 * pad + 1, dtype=jnp.int32)
  flips = jax.random.bernoulli(k_flip, 0.5, (batch,))
  return offsets, flips


def _check(x_flat, image_shape: Sequence[int], pad: int):
  shape = tuple(int(s) for s in image_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise LmcError(f"Image shape {tuple(image_shape)} is not (H, W, C) with every size >= 1; "
                   "pass e.g. (32, 32, 3).")
  if x_flat.ndim != 2 or x_flat.shape[1] != int(np.prod(shape)):
    raise LmcError(f"augment_batch takes flat images (b, {int(np.prod(shape))}) for image_shape "
                   f"{shape} but got shape {tuple(x_flat.shape)}; pass one batch of rows.")
  if int(pad) < 0:
    raise LmcError(f"Crop padding {pad} is negative; pass pad >= 0.")
  return shape


def augment_batch(key, x_flat, image_shape: Sequence[int], pad: int = 4):
  """Random-crop and flip a batch of flat images `(b, H*W*C)` -> `(b, H*W*C)`.

  Each image is zero-padded by `pad` pixels on every spatial side, cropped back to HxW at
  the offsets of `augment_choices(key, b, pad)` and then flipped left-right where its
  flip is True. The same key gives the same result.
  """
  h, w, c = _check(x_flat, image_shape, pad)
  pad = int(pad)
  b = x_flat.shape[0]
  offsets, flips = augment_choices(key, b, pad)
  images = x_flat.reshape(b, h, w, c)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def one(img, off, flip):
    crop = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, offsets, flips).reshape(b, h * w * c)
