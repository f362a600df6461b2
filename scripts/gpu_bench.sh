#!/usr/bin/env bash
# The performance record on one GPU, in one call (about 5 minutes on an H100): the issue's
# MNIST width-512 zoo (50 models x 60 epochs, LayerNorm, AdamW one-cycle), its 1225-pair
# sweep and all-pairs weight matching, each against its baseline, plus the Moons table.
# Needs data/mnist (python -m experiments.fetch --dataset=mnist) copied alongside.
# The one-model-at-a-time loops run on 2 models and the pair loops on 100 pairs, scaled.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -m experiments.bench --dataset=mnist --width=512 --num_models=50 --epochs=60 \
  --baseline_models=2 --baseline_pairs=100 --json="$OUT/bench_mnist_w512.json"
python -m experiments.bench --json="$OUT/bench_moons.json"
