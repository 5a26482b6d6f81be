#!/usr/bin/env bash
# Per-operator aarch64 instructions for one Atto-224 image (all instances of each op), scalar vs
# NEON, under qemu-aarch64 with the counting plugin. Usage: benches/qemu/ops.sh [QEMU_CPU]
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
mkdir -p target/qemu-insns
gcc -shared -fPIC -O2 -o target/qemu-insns/insn_count.so benches/qemu/insn_count.c
cargo +deb196 build -q --release -p edge --example op_insns --target aarch64-unknown-linux-gnu
ex=target/aarch64-unknown-linux-gnu/release/examples/op_insns
count() { env -i QEMU_CPU=$cpu qemu-aarch64 -plugin target/qemu-insns/insn_count.so $ex "$@" 2>&1 | sed -n 's/^insn_count: //p'; }
printf "%-11s %14s %14s %8s\n" op scalar neon ratio
for op in stem downsample dwconv ln fc1 gelu grn fc2 pool; do
  s1=$(count $op scalar 1); s3=$(count $op scalar 3); n1=$(count $op neon 1); n3=$(count $op neon 3)
  s=$(( (s3 - s1) / 2 )); n=$(( (n3 - n1) / 2 ))
  printf "%-11s %14d %14d %8.3f\n" $op $s $n "$(python3 -c "print($n/max($s,1))")"
done
