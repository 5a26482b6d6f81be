#!/usr/bin/env bash
# Bare-metal example end to end: convert the Atto fixture, compute the host's top-1 for the
# astronaut image with edge-bench, build the aarch64-unknown-none firmware (Debian rustc 1.96,
# build-std) and run it under qemu-system-aarch64, on one core and on four; the firmware's exit
# status says whether its top-1 matches the host's (and, on four, whether the logits equal the
# one-core ones bit for bit). Needs scripts/setup-aarch64.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
fw=firmware-examples/baremetal
mkdir -p $fw/assets
# Only the two tools it runs: a workspace-wide `--bins` build resolves features without the
# dev-dependencies and would rebuild the Burn stack that `cargo test` already built.
cargo build -q -p quant -p edge-bench
./target/debug/quant convert --weights tests/fixtures/atto/weights.safetensors --out $fw/assets/model.cnx >/dev/null
img=tests/fixtures/atto/inputs/astronaut_u8_hwc_224x224x3.bin
cp $img $fw/assets/image_u8_hwc.bin
{ printf 'P6 224 224 255\n'; cat $img; } > $fw/assets/astronaut.ppm
top1=$(./target/debug/edge-bench --model $fw/assets/model.cnx --input $fw/assets/astronaut.ppm --crop-pct 1 --iters 1 --warmup 0 \
        | sed -n 's/^  1\. class *\([0-9]*\).*/\1/p')
echo "$top1" > $fw/assets/expected_top1.txt
echo "host top-1 (edge-bench, x86-64): $top1"
cd $fw
RUSTC_BOOTSTRAP=1 timeout 600 cargo +deb196 run -q --release
echo "firmware: top-1 matches the host (exit status 0)"
# SMP: the same firmware on 4 cores (secondaries started with PSCI CPU_ON, tasks from a shared
# counter: src/smp.rs); exit status 0 only if the 4-core logits equal the one-core ones bit for bit.
timeout 600 qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 128M -nic none -nographic -semihosting \
  -kernel target/aarch64-unknown-none/release/baremetal-classify
echo "firmware on 4 cores: same top-1, logits bit-identical to one core (exit status 0)"
