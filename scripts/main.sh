#!/usr/bin/env bash
# The main job (README): the whole chain on the embedded default (CPU, burn-ndarray, real
# Fashion-MNIST from Debian), on a budget of minutes:
#   A. timm-format Atto weights → `quant convert` → `edge-bench` on a real photo, checked against
#      PyTorch/timm's logits → `quant calibrate` (int8, GRN fp16) → `edge-bench`;
#   B. `train pretrain` (FCMAE) → `train finetune` from the pretrained encoder → `train export`
#      → `quant convert` + `quant calibrate` → `edge-bench` on a Fashion-MNIST test image.
# Budgets are env-tunable (MAIN_PRETRAIN_IMAGES, MAIN_FINETUNE_IMAGES, MAIN_EPOCHS); the
# defaults show each stage working, not the accuracy of a real run (docs/training.md: results).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT_DIR:-target/main-job}
mkdir -p "$out"
./scripts/setup-data.sh
cargo build --workspace --bins
fx=tests/fixtures/atto

echo "== 1. quant convert: timm safetensors → edge model file"
./target/debug/quant convert --weights $fx/weights.safetensors --out "$out/atto.cnx"
./target/debug/quant inspect "$out/atto.cnx"

echo "== 2. edge-bench: the astronaut photo (u8 RGB, 224×224), the best kernel set this CPU has, with a per-operator profile"
python3 - "$fx/inputs/astronaut_u8_hwc_224x224x3.bin" "$out/astronaut.ppm" <<'PY'
import sys
raw = open(sys.argv[1], 'rb').read()
open(sys.argv[2], 'wb').write(b'P6 224 224 255\n' + raw)
PY
./target/debug/edge-bench --model "$out/atto.cnx" --input "$out/astronaut.ppm" --crop-pct 1 --iters 5 --logits-out "$out/astronaut_logits.bin" --profile \
  | awk '/^  stages\.[0-9]\.blocks\./ { if (++n > 4) next } { print }'   # the full table has a line per step

echo "== 3. parity: edge logits vs PyTorch/timm on the same image"
python3 - "$out/astronaut_logits.bin" $fx/logits/astronaut.bin <<'PY'
import struct, sys
a = struct.unpack('1000f', open(sys.argv[1], 'rb').read())
b = struct.unpack('1000f', open(sys.argv[2], 'rb').read())
err = max(abs(x - y) for x, y in zip(a, b))
print(f"max |edge - timm| = {err:.3e} (limit 1e-4)")
sys.exit(0 if err <= 1e-4 else 1)
PY

echo "== 4. quant calibrate: int8 (GRN in fp16) from 64 Fashion-MNIST train images; report on 200 test images"
./target/debug/quant calibrate --weights $fx/weights.safetensors --images /usr/share/datasets/fashion-mnist \
  --num 64 --eval 200 --out "$out/atto_int8.cnx" --report "$out/int8_report.json" --report-png "$out/int8_sqnr.png" \
  | awk '/^  stages\./ { if (++n > 4) next } { print }'   # the full table has a line per layer: see the chart

echo "== 5. edge-bench: the int8 model on the same photo"
./target/debug/edge-bench --model "$out/atto_int8.cnx" --input "$out/astronaut.ppm" --crop-pct 1 --iters 5

fm=/usr/share/datasets/fashion-mnist
pt_n=${MAIN_PRETRAIN_IMAGES:-512}
ft_n=${MAIN_FINETUNE_IMAGES:-1024}
epochs=${MAIN_EPOCHS:-1}
echo "== 6. train pretrain: FCMAE on $pt_n Fashion-MNIST images (64 px, 2×2 patches of 32, 60 % masked)"
rm -rf "$out/pretrain" "$out/finetune"
./target/debug/train pretrain --size atto --data $fm --input-size 64 --train-subset "$pt_n" \
  --epochs "$epochs" --batch 32 --lr 1.5e-3 --warmup-epochs 0 --out "$out/pretrain"

echo "== 7. train export: the pretrained encoder in timm names (no head, like timm's .fcmae weights)"
./target/debug/train export --checkpoint "$out/pretrain/checkpoint.safetensors" --out "$out/fcmae_encoder.safetensors"

echo "== 8. train finetune: from the FCMAE encoder on $ft_n images; top-1 on 500 test images"
./target/debug/train finetune --size atto --data $fm --input-size 64 --init "$out/fcmae_encoder.safetensors" \
  --train-subset "$ft_n" --test-subset 500 --epochs "$epochs" --batch 32 --lr 2e-3 --warmup-epochs 0 \
  --layer-decay 0.9 --drop-path 0 --label-smoothing 0.1 --ema 0.99 --crop-scale-min 0.35 --out "$out/finetune"

echo "== 9. train export → quant convert → quant calibrate (int8) → edge-bench on a test image"
./target/debug/train export --checkpoint "$out/finetune/checkpoint.safetensors" --out "$out/fmnist_atto.safetensors"
./target/debug/quant convert --weights "$out/fmnist_atto.safetensors" --input-size 64 --out "$out/fmnist_atto.cnx"
./target/debug/quant calibrate --weights "$out/fmnist_atto.safetensors" --input-size 64 --images $fm \
  --num 64 --eval 500 --out "$out/fmnist_atto_int8.cnx" --report "$out/fmnist_int8_report.json"
python3 - $fm/t10k-images-idx3-ubyte.gz "$out/fmnist_test0.pgm" <<'PY'
import gzip, sys
raw = gzip.open(sys.argv[1]).read()
open(sys.argv[2], 'wb').write(b'P5 28 28 255\n' + raw[16:16 + 784])
PY
for m in fmnist_atto.cnx fmnist_atto_int8.cnx; do
  ./target/debug/edge-bench --model "$out/$m" --input "$out/fmnist_test0.pgm" --crop-pct 1 --iters 5
done
echo "(test image 0 is class 9, Ankle boot)"
echo "pictures: $out/finetune/curves.png (training curves; also .svg), $out/int8_sqnr.png (int8 SQNR per layer)"
