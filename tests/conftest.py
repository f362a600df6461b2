"""Shared fixtures; shared helpers (tiny nets with random params) are in `tests.helpers`."""
import numpy as np
import pytest


@pytest.fixture
def rng():
  return np.random.default_rng(0)
