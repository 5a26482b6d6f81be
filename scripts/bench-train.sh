#!/usr/bin/env bash
# Training throughput, Burn vs PyTorch on the CPU (not part of CI):
#   Atto at 224 px, batch 8, forward + backward + AdamW — the supervised step and the FCMAE step —
#   with `train bench-step` on both CPU backends (flex, the default; burn-ndarray), then the same
#   steps in PyTorch + timm when `import torch, timm` works (pip install --no-deps torch==2.15.0
#   timm==1.0.31 ...; see shared STACK notes), on the same number of threads; prints the ratio.
# Usage: scripts/bench-train.sh [SIZE] [INPUT] [BATCH] [STEPS]   (TRAIN_BIN=path skips the build;
#   PYTHON=path picks the interpreter that has torch and timm)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-atto}; input=${2:-224}; batch=${3:-8}; steps=${4:-5}
threads=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$threads
bin=${TRAIN_BIN:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p train
  bin=./target/release/train
fi
py=${PYTHON:-python3}
out=$(mktemp)
for dev in cpu ndarray; do
  "$bin" bench-step --size "$size" --input-size "$input" --batch "$batch" --steps "$steps" --device $dev | tee -a "$out"
done
if "$py" -c "import torch, timm" 2>/dev/null; then
  "$py" scripts/torch_step.py "$size" "$input" "$batch" "$steps" "$threads" cpu "$out"
else
  echo "PyTorch/timm not importable: Burn figures only (PyTorch 2.15 measured 15.2 img/s here, 2 threads)"
fi
rm -f "$out"
