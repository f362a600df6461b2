"""Checks on a dataset's raw arrays, made when it is loaded and before an install replaces
the one in place: a bad array is refused with the file it came from, what is wrong with it
and the fix (`fix`, a clause such as "run `python -m experiments.fetch ...`")."""
from __future__ import annotations

import numpy as np

from lmc_jax.errors import LmcError

NUM_CLASSES = 10  # MNIST and CIFAR-10 alike


def check_images(x, image_shape: tuple, what: str, fix: str) -> np.ndarray:
  """`x`: raw images (n, *image_shape) uint8 with n >= 1; `what` names them ("MNIST train
  images data/mnist/train-images-idx3-ubyte")."""
  if not isinstance(x, np.ndarray):
    raise LmcError(f"{what} are a {type(x).__name__}, not an array of images; {fix}.")
  if x.dtype != np.uint8:
    raise LmcError(f"{what} have dtype {x.dtype}, not uint8 pixels; {fix}.")
  if x.ndim != 1 + len(image_shape) or x.shape[1:] != tuple(image_shape):
    want = ", ".join(str(s) for s in ("n", *image_shape))
    raise LmcError(f"{what} have shape {x.shape}, not ({want}); {fix}.")
  if len(x) == 0:
    raise LmcError(f"{what} hold no images; {fix}.")
  return x


def check_labels(y, what: str, fix: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
  """`y`: integer labels (n,) in 0..num_classes-1 with n >= 1."""
  if not isinstance(y, np.ndarray):
    raise LmcError(f"{what} are a {type(y).__name__}, not an array of labels; {fix}.")
  if y.dtype.kind not in "ui":
    raise LmcError(f"{what} have dtype {y.dtype}, not an integer type; {fix}.")
  if y.ndim != 1:
    raise LmcError(f"{what} have shape {y.shape}, not (n,); {fix}.")
  if len(y) == 0:
    raise LmcError(f"{what} hold no labels; {fix}.")
  bad = y[(y < 0) | (y >= num_classes)]
  if len(bad):
    raise LmcError(f"{what} hold the label {int(bad[0])} ({len(bad)} of {len(y)} labels are "
                   f"outside 0..{num_classes - 1}); {fix}.")
  return y


def check_pair(x, y, what_x: str, what_y: str, fix: str) -> None:
  """One label per image."""
  if len(x) != len(y):
    raise LmcError(f"{what_x} hold {len(x)} images but {what_y} hold {len(y)} labels; {fix}.")


def check_split(x, y, image_shape: tuple, what_x: str, what_y: str, fix: str) -> None:
  """Images (n, *image_shape) uint8 and labels (n,) in 0..9 of one split."""
  check_images(x, image_shape, what_x, fix)
  check_labels(y, what_y, fix)
  check_pair(x, y, what_x, what_y, fix)
