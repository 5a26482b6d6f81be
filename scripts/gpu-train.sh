#!/usr/bin/env bash
# A few fine-tune and FCMAE pretrain steps on a GPU through Burn's wgpu backend (feature `gpu`,
# which builds from the package registries alone; burn's `cuda` feature downloads LLVM in a
# build script). Prints images per second, and the same steps in PyTorch + timm on CUDA when
# `import torch, timm` works there, with the ratio.
# Usage: scripts/gpu-train.sh [BATCH] [INPUT] [STEPS]
# TRAIN_BIN=path runs a `train` binary built elsewhere with `--features gpu` (a GPU machine
# without cargo); otherwise it is built here.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}; input=${2:-224}; steps=${3:-10}
bin=${TRAIN_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p train --features gpu
  bin=./target/release/train
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
out=$(mktemp)
for size in atto femto; do
  "$bin" bench-step --device gpu --size $size --input-size "$input" --batch "$batch" --steps "$steps" | tee "$out.$size"
done
if python3 -c "import torch, timm; assert torch.cuda.is_available()" 2>/dev/null; then
  for size in atto femto; do
    python3 scripts/torch_step.py $size "$input" "$batch" "$steps" 1 cuda "$out.$size"
  done
fi
rm -f "$out".*
