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
echo "== aarch64 bare metal: firmware under qemu-system-aarch64 (top-1 must match the host's)"
./scripts/firmware.sh
echo "== all tests passed"
