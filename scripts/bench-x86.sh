#!/usr/bin/env bash
# edge on this x86-64 host vs tract-onnx and onnxruntime, Atto 224, batch 1, 1 and 2 threads, f32 and
# int8, in one session: criterion (every kernel set the CPU has), then onnxruntime from PyPI on
# the same ONNX and input (and its static-QDQ int8 model), with the ratios; then the GEMM
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
cargo run -q --release -p edge --example gemm_roofline
