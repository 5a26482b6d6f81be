#!/usr/bin/env bash
# Training throughput, Burn vs PyTorch on the CPU (not part of CI):
#   Atto at 224 px, batch 8, forward + backward + AdamW — the supervised step and the FCMAE step —
#   with `train bench-step` on both CPU backends (flex, the default; burn-ndarray), the FCMAE step
#   with the sparse encoder (the default) and the masked-dense one on flex, then the same
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
# The sparse FCMAE encoder (the default above) against the masked-dense one, same step otherwise.
"$bin" bench-step --size "$size" --input-size "$input" --batch "$batch" --steps "$steps" --device cpu \
  --encoder dense | tee -a "$out"
python3 - "$out" <<'PY'
import re, sys
fc = {}
for line in open(sys.argv[1]):
    m = re.search(r"on Cpu: .*FCMAE step ([0-9.]+) img/s .*?(sparse|dense) encoder", line)
    if m:
        fc[m.group(2)] = float(m.group(1))
if "sparse" in fc and "dense" in fc:
    print(f"FCMAE step on flex: sparse encoder {fc['sparse']:.1f} img/s, masked dense {fc['dense']:.1f} img/s: {fc['sparse'] / fc['dense']:.2f}x")
PY
if "$py" -c "import torch, timm" 2>/dev/null; then
  "$py" scripts/torch_step.py "$size" "$input" "$batch" "$steps" "$threads" cpu "$out"
else
  echo "PyTorch/timm not importable: Burn figures only (PyTorch 2.15 measured 15.2 img/s here, 2 threads)"
fi
rm -f "$out"
