#!/usr/bin/env bash
# One Atto-224 image split across 1, 2 and 4 threads under qemu-aarch64 (user mode runs guest
# threads as host threads): executed instructions per image of the busiest thread (the critical
# path; an idle rayon worker parks in a futex, so waiting costs few instructions) and of all
# threads together (the work, whose growth is the cost of splitting). f32 NEON and int8 built for
# ARMv8.2 (+dotprod,+fp16: SDOT GEMMs, native fp16 GRN; RUSTC_BOOTSTRAP on Rust 1.96); the int8
# model is calibrated on 16 Fashion-MNIST images (scripts/setup-data.sh).
# Per image = (count with 3 iterations − count with 1) / 2, per thread (the plugin's per_thread
# mode: guest threads numbered in creation order; 0 is the main thread, which with --threads N > 1
# only waits while rayon's N pool threads run the image).
# Usage: benches/qemu/threads.sh [QEMU_CPU, default cortex-a76]   (THREADS="1 2 4" to change)
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
threads=${THREADS:-1 2 4}
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
[ -f $work/atto_i8.cnx ] || ./target/debug/quant calibrate --weights $w --images /usr/share/datasets/fashion-mnist \
  --num 16 --eval 0 --quiet --out $work/atto_i8.cnx >/dev/null
input=tests/fixtures/atto/inputs/astronaut.bin
# "vcpu count" lines of one run.
counts() { env -i QEMU_CPU=$cpu qemu-aarch64 -plugin $work/insn_count.so,per_thread=on "$@" 2>&1 >/dev/null \
  | sed -n 's/^insn_count vcpu \([0-9]*\): \([0-9]*\)$/\1 \2/p'; }
# "busiest all" per image over the threads of `--iters 3` minus `--iters 1`.
per_image() {
  counts "$@" --iters 1 --warmup 0 > $work/one.txt
  counts "$@" --iters 3 --warmup 0 > $work/three.txt
  python3 - $work/one.txt $work/three.txt <<'PY'
import sys
one = dict(map(int, l.split()) for l in open(sys.argv[1]))
three = dict(map(int, l.split()) for l in open(sys.argv[2]))
per = [(three[v] - one.get(v, 0)) / 2 for v in three]
print(int(max(per)), int(sum(per)))
PY
}
printf "%-30s %8s %16s %10s %16s %10s\n" "Atto 224, per image" threads "busiest thread" "÷ 1 thr" "all threads" "÷ 1 thr"
for kind in f32 int8; do
  if [ $kind = f32 ]; then bin=$v80; model=$work/atto.cnx; label="f32 NEON"
  else bin=$v82; model=$work/atto_i8.cnx; label="int8 NEON ARMv8.2 (SDOT, fp16)"; fi
  base=
  for t in $threads; do
    read -r busy all < <(per_image $bin --model $model --input $input --kernels neon --threads $t)
    [ -n "$base" ] || base=$busy
    printf "%-30s %8d %16d %10.3f %16d %10.3f\n" "$label" $t $busy \
      "$(python3 -c "print($busy/$base)")" $all "$(python3 -c "print($all/$base)")"
  done
done
echo "(QEMU_CPU=$cpu; instructions are not time: no memory effects, no IPC)"
