#!/usr/bin/env bash
# edge on this x86-64 host vs tract-onnx and onnxruntime, Atto 224, batch 1, 1 and 2 threads, f32 and
# int8, in one session: criterion (every kernel set the CPU has), then onnxruntime from PyPI on
# the same ONNX and input (and its static-QDQ int8 model), with the ratios; the 2-thread speed-ups
# in interleaved pairs (edge-bench --speedup, and the same for onnxruntime); then the GEMM
# roofline (fc1/fc2 GFLOP/s against this core's measured FMA peak). Minutes; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime numpy onnx
fi
cargo bench --bench atto_edge_vs_tract -- --noplot
"$venv/bin/python" scripts/bench_ort.py
# 2 threads over 1 in interleaved pairs (drift hits both sides of a pair alike): edge-bench --speedup.
cargo build -q -p quant
cargo build -q --release -p edge-bench
mkdir -p target/bench-x86
./target/debug/quant convert --weights tests/fixtures/atto/weights.safetensors --out target/bench-x86/atto.cnx >/dev/null
./target/debug/quant calibrate --weights tests/fixtures/atto/weights.safetensors --images /usr/share/datasets/fashion-mnist \
  --num 16 --eval 0 --quiet --out target/bench-x86/atto_i8.cnx >/dev/null
for m in atto atto_i8; do
  echo -n "edge $m, 2 threads: "
  ./target/release/edge-bench --model target/bench-x86/$m.cnx --input tests/fixtures/atto/inputs/astronaut.bin \
    --threads 2 --iters 300 --warmup 20 --speedup | tail -1
done
cargo run -q --release -p edge --example gemm_roofline
