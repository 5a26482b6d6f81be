#!/usr/bin/env python3
"""PyTorch seeds for the `weights` fuzz target: the tiny safetensors seeds saved with torch.save,
ZIP format under "model" (as the official scripts nest them) and legacy pickle format.

Usage: python3 tools/make_fuzz_pth_seeds.py fuzz/seeds/weights
"""
import glob, os, sys
import torch
from safetensors.torch import load_file

d = sys.argv[1]
for f in sorted(glob.glob(f"{d}/*_f32.safetensors")):
    sd = load_file(f)
    base = os.path.basename(f).replace("_f32.safetensors", "")
    torch.save({"model": sd, "epoch": 3}, f"{d}/{base}_zip.pth")
    torch.save({k: v.bfloat16() for k, v in sd.items()}, f"{d}/{base}_legacy.pth",
               _use_new_zipfile_serialization=False)
    print(base)
