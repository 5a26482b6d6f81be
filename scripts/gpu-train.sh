#!/usr/bin/env bash
# A few fine-tune and FCMAE pretrain steps on a GPU through Burn's wgpu backend (feature `gpu`,
# which builds from the package registries alone; burn's `cuda` feature downloads LLVM in a
# build script). Prints images per second. Usage: scripts/gpu-train.sh [BATCH] [INPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}; input=${2:-224}
cargo build --release -p train --features gpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
for size in atto femto; do
  ./target/release/train bench-step --device gpu --size $size --input-size "$input" --batch "$batch" --steps 10
done
