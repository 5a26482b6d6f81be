#!/usr/bin/env bash
# The seed's claim, small and real: FCMAE-pretrain Atto on Fashion-MNIST, fine-tune it, and
# fine-tune the same architecture from random init with the same fine-tune budget and recipe;
# prints both test accuracies. CPU; budgets via env (defaults: ~35 min on 2 cores).
#   PT_IMAGES × PT_EPOCHS pretraining images, FT_IMAGES × FT_EPOCHS fine-tuning images (both
#   runs), TEST test images. GRN=off runs all three without GRN (the ablation: ConvNeXt V1's MLP
#   in every block, `--no-grn`).
# Usage: scripts/fcmae-vs-scratch.sh [OUT_DIR]   (TRAIN_BIN=path to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/fcmae-vs-scratch}
pt_n=${PT_IMAGES:-12000}; pt_e=${PT_EPOCHS:-3}
ft_n=${FT_IMAGES:-6000}; ft_e=${FT_EPOCHS:-2}; test_n=${TEST:-2000}
grn=()
[ "${GRN:-on}" = off ] && grn=(--no-grn)
bin=${TRAIN_BIN:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p train
  bin=./target/release/train
fi
fm=/usr/share/datasets/fashion-mnist
mkdir -p "$out"
echo "== GRN ${GRN:-on}; FCMAE pretraining: $pt_n images × $pt_e epochs (64 px, 60 % of 32-px patches masked)"
"$bin" pretrain --size atto --data $fm --input-size 64 --train-subset "$pt_n" --epochs "$pt_e" \
  --batch 32 --lr 1.5e-3 --warmup-epochs 0.3 --seed 0 --quiet --out "$out/pretrain" "${grn[@]}"
"$bin" export --checkpoint "$out/pretrain/checkpoint.safetensors" --out "$out/fcmae_encoder.safetensors"
ft() { # name, extra args
  local name=$1; shift
  "$bin" finetune --size atto --data $fm --input-size 64 --train-subset "$ft_n" --test-subset "$test_n" \
    --epochs "$ft_e" --batch 64 --lr 2e-3 --warmup-epochs 0.1 --weight-decay 0.05 --layer-decay 1 \
    --drop-path 0 --label-smoothing 0.1 --ema 0 --crop-scale-min 1 --seed 0 --quiet \
    --out "$out/$name" "${grn[@]}" "$@" | tail -1 | sed "s/^/$name: /"
}
echo "== fine-tuning, $ft_n images × $ft_e epochs each, top-1 on $test_n test images"
ft from-fcmae --init "$out/fcmae_encoder.safetensors"
ft from-scratch
