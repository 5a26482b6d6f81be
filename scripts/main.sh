#!/usr/bin/env bash
# The main job (README): the whole chain on the embedded default (CPU, bundled data).
# Today: timm-format Atto weights → `quant convert` → edge model file → `edge-bench` on a real
# photo (the astronaut), checking timm's logits → `quant calibrate` on real Fashion-MNIST images
# → int8 model file (report on held-out images) → `edge-bench` on the same photo.
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

echo "== 2. edge-bench: the astronaut photo (u8 RGB, 224×224), scalar reference kernels"
python3 - "$fx/inputs/astronaut_u8_hwc_224x224x3.bin" "$out/astronaut.ppm" <<'PY'
import sys
raw = open(sys.argv[1], 'rb').read()
open(sys.argv[2], 'wb').write(b'P6 224 224 255\n' + raw)
PY
./target/debug/edge-bench --model "$out/atto.cnx" --input "$out/astronaut.ppm" --crop-pct 1 --iters 5 --logits-out "$out/astronaut_logits.bin"

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
  --num 64 --eval 200 --out "$out/atto_int8.cnx" --report "$out/int8_report.json"

echo "== 5. edge-bench: the int8 model on the same photo"
./target/debug/edge-bench --model "$out/atto_int8.cnx" --input "$out/astronaut.ppm" --crop-pct 1 --iters 5
