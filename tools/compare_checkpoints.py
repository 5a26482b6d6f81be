#!/usr/bin/env python3
"""Compares the `model.*` tensors (f32) of two train checkpoints (safetensors), with no
dependencies: relative L2 distance over all of them, ||a - b|| / ||a||, and the largest per-tensor
one. Exits 1 when the whole-model distance exceeds --rel (default 1e-5).

Usage: tools/compare_checkpoints.py A.safetensors B.safetensors [--rel 1e-5] [--prefix model.]"""
import argparse
import array
import json
import math
import struct
import sys


def tensors(path, prefix):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or not name.startswith(prefix):
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, expected F32")
        s, e = info["data_offsets"]
        out[name] = array.array("f", data[s:e])
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rel", type=float, default=1e-5)
    ap.add_argument("--prefix", default="model.")
    o = ap.parse_args(argv)
    rel = o.rel
    a, b = tensors(o.a, o.prefix), tensors(o.b, o.prefix)
    if a.keys() != b.keys():
        sys.exit(f"different tensors: only in A {sorted(a.keys() - b.keys())[:3]}, only in B {sorted(b.keys() - a.keys())[:3]}")
    num = den = 0.0
    worst = (0.0, "")
    for k in sorted(a):
        if len(a[k]) != len(b[k]):
            sys.exit(f"{k}: {len(a[k])} vs {len(b[k])} values")
        d = sum((x - y) ** 2 for x, y in zip(a[k], b[k]))
        n = sum(x * x for x in a[k])
        num, den = num + d, den + n
        r = math.sqrt(d / n) if n > 0 else math.sqrt(d)
        worst = max(worst, (r, k))
    total = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    print(f"{len(a)} tensors, {sum(len(v) for v in a.values())} values: relative L2 {total:.3e} "
          f"(largest per tensor {worst[0]:.3e}, {worst[1]}); bound {rel:.0e}")
    return 0 if total <= rel else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
