#!/usr/bin/env bash
# Per-operator aarch64 instructions for one Atto-224 image on the int8 path: scalar reference,
# NEON (ARMv8.0: SMULL/SADALP, fp16 emulated) and ARMv8.2 (SDOT for the convolutions, needs
# RUSTC_BOOTSTRAP on Rust 1.96; native fp16 for GRN), under qemu-aarch64 with the counting
# plugin, beside the f32 NEON figures of benches/qemu/ops.sh.
# Usage: [OPS="fc1 fc2"] [QUICK=1] benches/qemu/ops_i8.sh [QEMU_CPU with dotprod, default cortex-a76]
# QUICK=1 runs the ARMv8.2 kernels only (the scalar reference dominates the run time).
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
mkdir -p target/qemu-insns
gcc -shared -fPIC -O2 -o target/qemu-insns/insn_count.so benches/qemu/insn_count.c
RUSTC_BOOTSTRAP=1 cargo +deb196 build -q --release -p edge --features dotprod --example op_insns_i8 \
  --target aarch64-unknown-linux-gnu
ex=target/aarch64-unknown-linux-gnu/release/examples/op_insns_i8
count() { env -i QEMU_CPU=$cpu qemu-aarch64 -plugin target/qemu-insns/insn_count.so $ex "$@" 2>&1 | sed -n 's/^insn_count: //p'; }
per_image() { local one three; one=$(count "$1" "$2" 1); three=$(count "$1" "$2" 3); echo $(( (three - one) / 2 )); }
printf "%-11s %14s %14s %14s\n" op scalar "neon v8.0" "v8.2 sdot/fp16"
for op in ${OPS:-stem downsample dwconv ln fc1 gelu grn fc2 residual}; do
  s=-; n=-
  if [ -z "${QUICK:-}" ]; then s=$(per_image $op scalar); n=$(per_image $op neon); fi
  d="-"; case $op in stem|downsample|fc1|fc2|grn) d=$(per_image $op sdot);; esac
  printf "%-11s %14s %14s %14s\n" $op $s $n $d
done
