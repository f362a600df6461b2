#!/usr/bin/env bash
# The performance record on one GPU, in one call (about 5 minutes on an H100 per precision;
# PRECISION=fp32 halves it): the issue's
# MNIST width-512 zoo (50 models x 60 epochs, LayerNorm, AdamW one-cycle), its 1225-pair
# sweep and all-pairs weight matching, each against its baseline, plus the Moons table,
# plus the conv rows: images/s per model of ResNet-20 and vgg_small zoos at width
# multipliers 1 and 4 (on MNIST, whose files fit beside the checkout where CIFAR-10's do not).
# Needs data/mnist (python -m experiments.fetch --dataset=mnist) copied alongside.
# The one-model-at-a-time loops run on 2 models and the pair loops on 100 pairs, scaled.
# The MNIST zoo and sweep are timed in fp32 and bf16 side by side (PRECISION).
#
# PARTS picks what runs (default mlp,moons,conv: e.g. PARTS=conv for the conv rows alone, in
# a second call where device time is short). Every size can be set from the environment (the
# test suite runs the mlp and moons parts tiny on a CPU, with LMC_JAX_ACCELERATOR_PATHS=1, so
# that the script cannot rot before a GPU runs it):
#   WIDTH=512 NUM_MODELS=50 EPOCHS=60 BASELINE_MODELS=2 BASELINE_PAIRS=100 TRAIN_SUBSET=0
#   PRECISION=fp32,bf16
#   MOONS_ARGS="" (extra flags of the Moons table, e.g. "--quick")  OUT=runs/bench
#   CONV_ARCHS=resnet20,vgg_small CONV_WIDTHS=1,4 CONV_MODELS=4 CONV_EPOCHS=1
#   CONV_SUBSET=10000 (training images; the sweep and plane use a fifth as many test images)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench}" PARTS=",${PARTS:-mlp,moons,conv},"
WIDTH="${WIDTH:-512}" NUM_MODELS="${NUM_MODELS:-50}" EPOCHS="${EPOCHS:-60}"
BASELINE_MODELS="${BASELINE_MODELS:-2}" BASELINE_PAIRS="${BASELINE_PAIRS:-100}"
TRAIN_SUBSET="${TRAIN_SUBSET:-0}" MOONS_ARGS="${MOONS_ARGS:-}" PRECISION="${PRECISION:-fp32,bf16}"
CONV_ARCHS="${CONV_ARCHS:-resnet20,vgg_small}" CONV_WIDTHS="${CONV_WIDTHS:-1,4}"
CONV_MODELS="${CONV_MODELS:-4}" CONV_EPOCHS="${CONV_EPOCHS:-1}" CONV_SUBSET="${CONV_SUBSET:-10000}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
if [[ "$PARTS" == *,mlp,* ]]; then
  python -m experiments.bench --dataset=mnist --width="$WIDTH" --num_models="$NUM_MODELS" \
    --epochs="$EPOCHS" --baseline_models="$BASELINE_MODELS" --baseline_pairs="$BASELINE_PAIRS" \
    --train_subset="$TRAIN_SUBSET" --test_subset="$TRAIN_SUBSET" --precision="$PRECISION" \
    --json="$OUT/bench_mnist_w$WIDTH.json"
fi
if [[ "$PARTS" == *,moons,* ]]; then
  # shellcheck disable=SC2086  # MOONS_ARGS is a list of flags
  python -m experiments.bench $MOONS_ARGS --json="$OUT/bench_moons.json"
fi
if [[ "$PARTS" == *,conv,* ]]; then
  for arch in ${CONV_ARCHS//,/ }; do  # fp32: the bench times bf16 for MLPs only
    python -m experiments.bench --dataset=mnist --arch="$arch" --width="$CONV_WIDTHS" \
      --num_models="$CONV_MODELS" --epochs="$CONV_EPOCHS" --baseline_models=1 \
      --baseline_pairs=1 --train_subset="$CONV_SUBSET" --test_subset=$((CONV_SUBSET / 5)) \
      --json="$OUT/bench_mnist_$arch.json"
  done
fi
