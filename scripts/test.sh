#!/usr/bin/env bash
# The project's test command (README): installs what it needs, then builds and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== host: build, lint and test the workspace (x86-64, Rust stable)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

echo "== aarch64: toolchain (Debian packages; idempotent)"
./scripts/setup-aarch64.sh

echo "== aarch64: edge tests (NEON kernels vs references, full-model timm parity) under qemu-aarch64"
for cpu in cortex-a72 cortex-a76; do
  echo "-- QEMU_CPU=$cpu"
  QEMU_CPU=$cpu cargo +deb196 test -p edge --target aarch64-unknown-linux-gnu
done
echo "-- SDOT int8 kernels (feature dotprod; Rust 1.96 gates vdotq_s32: RUSTC_BOOTSTRAP) on cortex-a76"
QEMU_CPU=cortex-a76 RUSTC_BOOTSTRAP=1 cargo +deb196 test -p edge --features dotprod \
  --target aarch64-unknown-linux-gnu --lib -- i8 --nocapture
echo "== aarch64: edge-bench (the tool users copy to a board) reproduces timm's logits under qemu-aarch64"
cargo build -q -p quant
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

echo "== aarch64 bare metal: firmware under qemu-system-aarch64 (top-1 must match the host's)"
./scripts/firmware.sh
echo "== all tests passed"
