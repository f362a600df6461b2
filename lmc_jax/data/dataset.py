"""The records a dataset is handed around as: its arrays (`Dataset`) and what is known of it
without loading them (`DatasetInfo`)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np


class Dataset(NamedTuple):
  x_train: np.ndarray  # (n_train, d) float32
  y_train: np.ndarray  # (n_train,) int32
  x_test: np.ndarray  # (n_test, d) float32
  y_test: np.ndarray  # (n_test,) int32
  num_classes: int
  source: str = ""  # how results from it are labelled, e.g. "CIFAR-10 (JPEG re-encode)"
  # (H, W, C) of image data, whose rows are images flattened in HWC order; None otherwise.
  image_shape: Optional[Tuple[int, int, int]] = None

  @property
  def d_out(self) -> int:
    return logits_for(self.num_classes)


class DatasetInfo(NamedTuple):
  """What is known of a dataset without loading its arrays."""
  d_in: int  # features per flat input row
  num_classes: int
  image_shape: Optional[Tuple[int, int, int]]  # (H, W, C) of image data, None for flat rows
  n_train: int  # training samples a zoo trains on (after train_subset)
  n_test: int  # test samples it is evaluated on (after test_subset)
  name: str  # the dataset name as given
  vocab: Optional[int] = None  # token data: each row holds ids below vocab (None otherwise)

  @property
  def d_out(self) -> int:
    return logits_for(self.num_classes)


def logits_for(num_classes: int) -> int:
  """Logits a model needs: one for a binary problem (sigmoid), else one per class."""
  return 1 if num_classes == 2 else num_classes
