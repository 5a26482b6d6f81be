#!/usr/bin/env bash
# edge from C (edge-capi + include/edge.h): firmware-examples/c/main.c built with gcc against the
# static library, on the host and for aarch64 (aarch64-linux-gnu-gcc, run under qemu-aarch64);
# its logits must equal edge-bench's bit for bit on the same file and image, on each.
# Needs scripts/setup-aarch64.sh for the aarch64 half (skipped with HOST_ONLY=1).
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/c-example
mkdir -p $work
cargo build -q -p quant -p edge-bench -p edge-capi
./target/debug/quant convert --weights tests/fixtures/atto/weights.safetensors --out $work/atto.cnx >/dev/null
img=tests/fixtures/atto/inputs/astronaut_u8_hwc_224x224x3.bin
{ printf 'P6 224 224 255\n'; cat $img; } > $work/astronaut.ppm
cc=(-std=c11 -O2 -Wall -Wextra -Werror -Iedge-capi/include firmware-examples/c/main.c)

gcc "${cc[@]}" target/debug/libedge_capi.a -lm -lpthread -ldl -o $work/classify
$work/classify $work/atto.cnx $img $work/c_logits.bin
./target/debug/edge-bench --model $work/atto.cnx --input $work/astronaut.ppm --crop-pct 1 --iters 1 --warmup 0 \
  --logits-out $work/bench_logits.bin >/dev/null
cmp $work/c_logits.bin $work/bench_logits.bin
echo "host: the C example's logits = edge-bench's, bit for bit"
[ "${HOST_ONLY:-0}" = 1 ] && exit 0

cargo +deb196 build -q -p edge-capi -p edge-bench --target aarch64-unknown-linux-gnu
a64=target/aarch64-unknown-linux-gnu/debug   # the dev profile is optimised (opt-level 3)
aarch64-linux-gnu-gcc "${cc[@]}" $a64/libedge_capi.a -lm -lpthread -ldl -o $work/classify-aarch64
for cpu in cortex-a72 cortex-a76; do
  QEMU_CPU=$cpu qemu-aarch64 $work/classify-aarch64 $work/atto.cnx $img $work/c_logits_a64.bin >/dev/null
  QEMU_CPU=$cpu qemu-aarch64 $a64/edge-bench --model $work/atto.cnx --input $work/astronaut.ppm \
    --crop-pct 1 --iters 1 --warmup 0 --logits-out $work/bench_logits_a64.bin >/dev/null
  cmp $work/c_logits_a64.bin $work/bench_logits_a64.bin
  echo "aarch64 ($cpu, qemu): the C example's logits = edge-bench's, bit for bit"
done
