#!/usr/bin/env bash
# Executed aarch64 instructions per image under qemu-aarch64 (single thread, fixed environment),
# for edge NEON and edge scalar (and tract-onnx when an aarch64 `tract` binary is given in
# TRACT_AARCH64, see docs/kernels.md), Atto/Femto/Pico at 224, side by side with MACs per image.
# Per image = (count with 3 iterations − count with 1) / 2, so start-up and parsing cancel out.
# Usage: [MODELS="atto femto pico"] [TRACT_AARCH64=path] benches/qemu/run.sh [QEMU_CPU (default cortex-a76)]
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
work=target/qemu-insns
mkdir -p $work
gcc -shared -fPIC -O2 -o $work/insn_count.so benches/qemu/insn_count.c
cargo build -q --workspace --bins
cargo +deb196 build -q --release -p edge-bench --target aarch64-unknown-linux-gnu
bench=target/aarch64-unknown-linux-gnu/release/edge-bench
input=tests/fixtures/atto/inputs/astronaut.bin

count() { # count ARGS... -> instructions of one run
  env -i QEMU_CPU=$cpu qemu-aarch64 -plugin $work/insn_count.so "$@" 2>&1 >/dev/null \
    | sed -n 's/^insn_count: //p'
}
per_image() { # per_image ARGS-before-iters...
  local one three
  one=$(count "$@" --iters 1 --warmup 0)
  three=$(count "$@" --iters 3 --warmup 0)
  echo $(( (three - one) / 2 ))
}

printf "%-6s %10s  %14s %9s  %14s %9s  %14s %9s  %s\n" model "MACs" "neon insns" "/MAC" "scalar insns" "/MAC" "tract insns" "/MAC" "neon/scalar"
for arch in ${MODELS:-atto femto pico}; do
  model=$work/$arch.cnx
  if [ "$arch" = atto ]; then
    ./target/debug/quant convert --weights tests/fixtures/atto/weights.safetensors --out $model >/dev/null
  else
    ./target/debug/quant synth --arch $arch --out $model >/dev/null
  fi
  macs=$(./target/debug/quant inspect $model | sed -n 's/.*params, \([0-9]*\) MACs.*/\1/p')
  neon=$(per_image $bench --model $model --input $input --kernels neon --threads 1)
  scalar=$(per_image $bench --model $model --input $input --kernels scalar --threads 1)
  tract="-"; tpm="-"
  if [ "$arch" = atto ] && [ -n "${TRACT_AARCH64:-}" ]; then
    onnx=tests/fixtures/atto/model_static.onnx
    t1=$(count $TRACT_AARCH64 $onnx -O bench -R --warmup-loops 0 --max-loops 1 --max-time 100000000)
    t6=$(count $TRACT_AARCH64 $onnx -O bench -R --warmup-loops 0 --max-loops 6 --max-time 100000000)
    tract=$(( (t6 - t1) / 5 )); tpm=$(python3 -c "print(f'{$tract/$macs:.3f}')")
  fi
  printf "%-6s %10d  %14d %9.3f  %14d %9.3f  %14s %9s  %.3f\n" $arch $macs $neon \
    "$(python3 -c "print($neon/$macs)")" $scalar "$(python3 -c "print($scalar/$macs)")" "$tract" "$tpm" \
    "$(python3 -c "print($neon/$scalar)")"
done
echo "(QEMU_CPU=$cpu; instructions are not time: no memory effects, no IPC)"
