#!/usr/bin/env bash
# Installs the floor versions of requirements-floor.txt into a fresh virtual environment
# (outside the checkout) and runs the library's fast tests there against this checkout.
# CI runs it after the main test suite; about 4 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/floor"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python -m venv "$venv"
# An old pip (Python 3.10's 23.0) spends minutes backtracking over these pins; a current one
# resolves them at once.
"$venv/bin/pip" install -q -U pip
"$venv/bin/pip" install -q -r requirements-floor.txt
"$venv/bin/python" -c "import jax, flax, optax; print('floor: jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_permutation.py tests/test_weight_matching.py tests/test_weight_matching_device.py \
  tests/test_interpolation.py tests/test_measures.py tests/test_models.py tests/test_training.py \
  tests/test_repair.py tests/test_registry.py tests/test_formats.py tests/test_layout.py \
  tests/test_progress.py tests/test_zoo_io.py tests/test_config.py tests/test_datasets.py
