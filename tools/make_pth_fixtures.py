#!/usr/bin/env python3
"""PyTorch-pickled (.pth) copies of the `custom` fixture, for the .pth import path.

Usage: python3 tools/make_pth_fixtures.py FIXTURES_EXTRA_DIR OUT_DIR

Both files hold exactly the tensors of the safetensors fixtures beside them, so the logits in
custom_logits.bin apply unchanged:
  custom_official.pth        : the official facebookresearch layout, torch.save({"model": state_dict,
                               "epoch": ...}) in the ZIP format of PyTorch >= 1.6 (f32)
  custom_timm_bf16_legacy.pth: timm names, bf16, the legacy (pre-1.6) pickle format
  no_model.pth               : a checkpoint with tensors but no model in it (an error case)
"""
import os, sys
import torch
from safetensors.torch import load_file

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
official = load_file(f"{src}/custom_official_f32.safetensors")
torch.save({"model": official, "epoch": 299, "args": {"model": "custom"}}, f"{out}/custom_official.pth")
timm_bf16 = load_file(f"{src}/custom_weights.safetensors")
torch.save(timm_bf16, f"{out}/custom_timm_bf16_legacy.pth", _use_new_zipfile_serialization=False)
torch.save({"optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}}, "epoch": 3}, f"{out}/no_model.pth")
for f in ("custom_official.pth", "custom_timm_bf16_legacy.pth", "no_model.pth"):
    print(f, os.path.getsize(f"{out}/{f}"), "bytes, torch", torch.__version__)
