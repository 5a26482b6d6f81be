#!/usr/bin/env bash
# Executed aarch64 instructions per Atto-224 image, whole model, under qemu-aarch64: f32 NEON,
# int8 scalar, int8 NEON on ARMv8.0 (SMULL/SADALP, fp16 by conversions), int8 NEON built for
# ARMv8.2 (+dotprod,+fp16: SDOT GEMMs, native fp16 GRN; RUSTC_BOOTSTRAP on Rust 1.96).
# The int8 model is calibrated here on 16 Fashion-MNIST images (scripts/setup-data.sh).
# Per image = (count with 3 iterations − count with 1) / 2. Usage: benches/qemu/int8.sh [QEMU_CPU, default cortex-a76]
# QUICK=1 skips the slow int8 scalar and ARMv8.0 runs (f32 NEON and ARMv8.2 only).
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
work=target/qemu-insns
mkdir -p $work
gcc -shared -fPIC -O2 -o $work/insn_count.so benches/qemu/insn_count.c
cargo build -q -p quant
cargo +deb196 build -q --release -p edge-bench --target aarch64-unknown-linux-gnu
RUSTC_BOOTSTRAP=1 CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+dotprod,+fp16" \
  cargo +deb196 build -q --release -p edge-bench --features dotprod --target aarch64-unknown-linux-gnu \
  --target-dir target/aarch64-dotprod
v80=target/aarch64-unknown-linux-gnu/release/edge-bench
v82=target/aarch64-dotprod/aarch64-unknown-linux-gnu/release/edge-bench
w=tests/fixtures/atto/weights.safetensors
./target/debug/quant convert --weights $w --out $work/atto.cnx >/dev/null
./target/debug/quant calibrate --weights $w --images /usr/share/datasets/fashion-mnist --num 16 --eval 0 \
  --quiet --out $work/atto_i8.cnx >/dev/null
input=tests/fixtures/atto/inputs/astronaut.bin
count() { env -i QEMU_CPU=$cpu qemu-aarch64 -plugin $work/insn_count.so "$@" 2>&1 >/dev/null | sed -n 's/^insn_count: //p'; }
per_image() { local one three; one=$(count "$@" --iters 1 --warmup 0); three=$(count "$@" --iters 3 --warmup 0); echo $(( (three - one) / 2 )); }
f32=$(per_image $v80 --model $work/atto.cnx --input $input --kernels neon --threads 1)
s8=0; n8=0
if [ -z "${QUICK:-}" ]; then
  s8=$(per_image $v80 --model $work/atto_i8.cnx --input $input --kernels scalar --threads 1)
  n8=$(per_image $v80 --model $work/atto_i8.cnx --input $input --kernels neon --threads 1)
fi
d8=$(per_image $v82 --model $work/atto_i8.cnx --input $input --kernels neon --threads 1)
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }
printf "%-34s %14s %12s\n" "Atto 224, per image" instructions "÷ f32 NEON"
printf "%-34s %14d %12s\n" "f32 NEON" $f32 1.000
printf "%-34s %14d %12s\n" "int8 scalar reference" $s8 "$(ratio $s8 $f32)"
printf "%-34s %14d %12s\n" "int8 NEON ARMv8.0" $n8 "$(ratio $n8 $f32)"
printf "%-34s %14d %12s\n" "int8 NEON ARMv8.2 (SDOT, fp16)" $d8 "$(ratio $d8 $f32)"
echo "(QEMU_CPU=$cpu; instructions are not time: no memory effects, no IPC)"
