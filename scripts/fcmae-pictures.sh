#!/usr/bin/env bash
# FCMAE pretraining of Atto on Fashion-MNIST (CPU, or a GPU with DEVICE=gpu), at a resolution
# whose 32-px patch grid makes the MAE figure readable (128 px: 4×4 patches, 6 visible), then the
# four-panel reconstruction strips of held-out test images and the encoder export.
# A checkpoint is written every epoch, so a run cut short by LIMIT seconds still pictures the last
# finished epoch.
# Usage: scripts/fcmae-pictures.sh OUT [INPUT] [IMAGES] [EPOCHS] [BATCH]
#   env: TRAIN_BIN (default: build here, with `--features gpu` when DEVICE=gpu), DATA (IDX
#        folder), IMAGES_DIR (PNG files to reconstruct; default: the first 6 test images, written
#        to OUT/test), LIMIT (seconds for pretraining, default 3600), DEVICE (cpu | gpu, default cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; input=${2:-128}; n=${3:-6000}; epochs=${4:-3}; batch=${5:-32}
device=${DEVICE:-cpu}
bin=${TRAIN_BIN:-}
if [ -z "$bin" ]; then
  if [ "$device" = gpu ]; then cargo build -q --release -p train --features gpu; else cargo build -q --release -p train; fi
  bin=./target/release/train
fi
data=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
set +e
timeout "${LIMIT:-3600}" "$bin" pretrain --device "$device" --size atto --data "$data" \
  --input-size "$input" --train-subset "$n" --epochs "$epochs" --batch "$batch" --lr 1.5e-3 \
  --warmup-epochs 0.5 --vis-every 1 --seed 0 --quiet --out "$out/pretrain"
echo "pretrain exit status $? (124: stopped by LIMIT after the last checkpointed epoch)"
set -e
cat "$out/pretrain/metrics.csv"
ck="$out/pretrain/checkpoint.safetensors"
imgs=${IMAGES_DIR:-}
if [ -z "$imgs" ]; then
  imgs="$out/test"
  python3 scripts/fmnist_png.py "$data/t10k-images-idx3-ubyte.gz" 6 "$imgs"
fi
for img in "$imgs"/*.png; do
  [ -f "$img" ] || continue
  "$bin" visualize --checkpoint "$ck" --image "$img" --out "$out/recon_$(basename "$img")"
done
"$bin" export --checkpoint "$ck" --out "$out/fcmae_encoder.safetensors"
