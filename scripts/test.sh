#!/usr/bin/env bash
# The project's test command (README): installs what it needs, then builds and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A clean clone builds once: incremental compilation would only add bookkeeping.
export CARGO_INCREMENTAL=0

echo "== data: Fashion-MNIST (Debian package; idempotent)"
./scripts/setup-data.sh

echo "== host: build, lint and test the workspace (x86-64, Rust stable)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

echo "== aarch64: toolchain (Debian packages; idempotent)"
./scripts/setup-aarch64.sh

echo "== aarch64: edge tests (NEON kernels vs references, full-model timm parity, int8 models"
echo "   bit-identical to the scalar reference tap by tap) under qemu-aarch64"
# Kernel sets on aarch64 are chosen at compile time, so one CPU model runs the whole suite; the
# unit tests also check the kernels picked by run-time detection (native fp16 GRN) on cortex-a76.
echo "-- QEMU_CPU=cortex-a72"
QEMU_CPU=cortex-a72 cargo +deb196 test -p edge --features std --target aarch64-unknown-linux-gnu
echo "-- QEMU_CPU=cortex-a76 (unit tests: run-time detected fp16)"
QEMU_CPU=cortex-a76 cargo +deb196 test -p edge --target aarch64-unknown-linux-gnu --lib
echo "-- int8 with SDOT and native fp16 (feature dotprod, built for +dotprod,+fp16; Rust 1.96 gates"
echo "   vdotq_s32: RUSTC_BOOTSTRAP) on cortex-a76: kernels and whole models vs the scalar reference, and"
echo "   bit-identical for any worker count"
QEMU_CPU=cortex-a76 RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+dotprod,+fp16" \
  cargo +deb196 test -p edge --features dotprod,std --target aarch64-unknown-linux-gnu \
  --lib --test int8_model --test parallel -- i8 int8 worker --nocapture
echo "== aarch64: edge-bench (the tool users copy to a board) reproduces timm's logits under qemu-aarch64"
cargo build -q -p quant -p edge-bench
mkdir -p target/aarch64-check
./target/debug/quant convert --weights tests/fixtures/atto/weights.safetensors --out target/aarch64-check/atto.cnx >/dev/null
QEMU_CPU=cortex-a72 cargo +deb196 run -q -p edge-bench --target aarch64-unknown-linux-gnu -- \
  --model target/aarch64-check/atto.cnx --input tests/fixtures/atto/inputs/astronaut.bin \
  --iters 1 --warmup 0 --logits-out target/aarch64-check/logits.bin
python3 - target/aarch64-check/logits.bin tests/fixtures/atto/logits/astronaut.bin <<'PY'
import struct, sys
a = struct.unpack('1000f', open(sys.argv[1], 'rb').read())
b = struct.unpack('1000f', open(sys.argv[2], 'rb').read())
err = max(abs(x - y) for x, y in zip(a, b))
print(f"aarch64 edge-bench (neon): max |edge - timm| = {err:.3e}")
sys.exit(0 if err <= 1e-4 else 1)
PY

echo "== aarch64: an int8 model calibrated on the host runs bit-identically in edge-bench on aarch64"
./target/debug/quant calibrate --weights tests/fixtures/atto/weights.safetensors \
  --images /usr/share/datasets/fashion-mnist --num 8 --eval 0 --quiet --out target/aarch64-check/atto_i8.cnx
./target/debug/edge-bench --model target/aarch64-check/atto_i8.cnx --kernels scalar \
  --input tests/fixtures/atto/inputs/astronaut.bin --iters 1 --warmup 0 \
  --logits-out target/aarch64-check/i8_host.bin >/dev/null
QEMU_CPU=cortex-a72 cargo +deb196 run -q -p edge-bench --target aarch64-unknown-linux-gnu -- \
  --model target/aarch64-check/atto_i8.cnx --input tests/fixtures/atto/inputs/astronaut.bin \
  --iters 1 --warmup 0 --logits-out target/aarch64-check/i8_neon.bin | grep -E "kernels|1\. class"
cmp target/aarch64-check/i8_host.bin target/aarch64-check/i8_neon.bin
echo "aarch64 edge-bench int8 (neon) logits = host scalar logits, bit for bit"

echo "== C: firmware-examples/c against edge-capi's static library, host and aarch64 (qemu): logits = edge-bench's"
./scripts/c-example.sh

echo "== aarch64 bare metal: firmware under qemu-system-aarch64 (top-1 must match the host's)"
./scripts/firmware.sh
echo "== all tests passed"
