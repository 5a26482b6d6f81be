"""onnxruntime on timm's Atto ONNX, batch 1, one thread, f32 and static-QDQ int8, on the same
input as edge's benchmark; then the ratios against edge's criterion medians.

Usage: python scripts/bench_ort.py [--iters 50] (run by scripts/bench-x86.sh after
`cargo bench --bench atto_edge_vs_tract`, whose medians it reads from target/criterion)."""
import argparse
import glob
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX = os.path.join(ROOT, "tests/fixtures/atto/model_static.onnx")
INPUT = os.path.join(ROOT, "tests/fixtures/atto/inputs/astronaut.bin")


def session(path, threads=1):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def median_ms(s, x, iters):
    name = s.get_inputs()[0].name
    for _ in range(5):
        s.run(None, {name: x})
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)


def interleaved_speedup(one, two, x, pairs):
    """Median over `pairs` of (1-thread ms ÷ 2-thread ms), each side timed right after an
    untimed run of its own, the sides alternating first: `edge-bench --speedup`'s method."""
    name = one.get_inputs()[0].name
    for s in (one, two):
        for _ in range(5):
            s.run(None, {name: x})

    def timed(s):
        s.run(None, {name: x})
        t0 = time.perf_counter()
        s.run(None, {name: x})
        return time.perf_counter() - t0

    ratios = []
    for i in range(pairs):
        if i % 2 == 0:
            a = timed(one)
            b = timed(two)
        else:
            b = timed(two)
            a = timed(one)
        ratios.append(a / b)
    return statistics.median(ratios)


class OneInput(CalibrationDataReader):
    """The benchmark's own photo, plus two noise images (calibration, not accuracy)."""

    def __init__(self, name, x):
        rng = np.random.default_rng(0)
        self.items = iter([x] + [rng.standard_normal(x.shape).astype(np.float32) for _ in range(2)])
        self.name = name

    def get_next(self):
        v = next(self.items, None)
        return None if v is None else {self.name: v}


def criterion_median_ms(bench):
    p = os.path.join(ROOT, "target/criterion/atto224_batch1_1thread", bench, "new/estimates.json")
    if not os.path.exists(p):
        return None
    return json.load(open(p))["median"]["point_estimate"] / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    x = np.fromfile(INPUT, dtype=np.float32).reshape(1, 3, 224, 224)
    f32 = session(ONNX)
    name = f32.get_inputs()[0].name
    qdq = os.path.join(ROOT, "target/atto_qdq_int8.onnx")
    quantize_static(ONNX, qdq, OneInput(name, x), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    ort_f32 = median_ms(f32, x, args.iters)
    ort_i8 = median_ms(session(qdq), x, args.iters)
    ort_f32_2 = median_ms(session(ONNX, 2), x, args.iters)
    ort_i8_2 = median_ms(session(qdq, 2), x, args.iters)
    print(f"onnxruntime {ort.__version__}, 1 thread: f32 {ort_f32:.2f} ms, int8 (static QDQ) {ort_i8:.2f} ms")
    print(f"onnxruntime 2 threads: f32 {ort_f32_2:.2f} ms ({ort_f32 / ort_f32_2:.2f}× its 1 thread), "
          f"int8 {ort_i8_2:.2f} ms ({ort_i8 / ort_i8_2:.2f}×)")
    print("onnxruntime 2 threads, speed-up over 1 thread in interleaved pairs (median of "
          f"{args.pairs}): f32 {interleaved_speedup(f32, session(ONNX, 2), x, args.pairs):.3f}×, "
          f"int8 {interleaved_speedup(session(qdq), session(qdq, 2), x, args.pairs):.3f}×")
    benches = sorted(os.path.basename(os.path.dirname(os.path.dirname(p))) for p in glob.glob(
        os.path.join(ROOT, "target/criterion/atto224_batch1_1thread/*/new/estimates.json")))
    for b in benches:
        ms = criterion_median_ms(b)
        two = "_2threads" in b
        ref = (ort_i8_2 if two else ort_i8) if "int8" in b else (ort_f32_2 if two else ort_f32)
        line = f"{b:34s} {ms:8.2f} ms   × onnxruntime {'int8' if 'int8' in b else 'f32 '} ({'2' if two else '1'} thr): {ms / ref:5.2f}"
        if two:
            one = criterion_median_ms(b[: b.index("_2threads")])
            if one:
                line += f"   speed-up over 1 thread: {one / ms:.2f}×"
        print(line)


if __name__ == "__main__":
    main()
