#!/usr/bin/env python3
"""timm's logits of the `custom` fixture at input sizes that are not multiples of 32 (PyTorch +
timm, CPU, f32): timm floors every strided convolution (stem 4x4/s4, downsample 2x2/s2), so
any H, W >= 32 runs. Reuses custom_weights.safetensors (exact in f32) from make_fixtures.py.

Usage: python3 tools/make_odd_size_fixtures.py tests/fixtures/extra
Writes custom_odd_{H}x{W}_input.bin / _logits.bin (raw little-endian f32) and custom_odd.json.
"""
import json, sys
import torch, timm
from timm.models.convnext import ConvNeXt
from safetensors.torch import load_file

out = sys.argv[1]
model = ConvNeXt(depths=(1, 1, 3, 1), dims=(16, 32, 48, 64), num_classes=7, use_grn=True,
                 ls_init_value=None, conv_mlp=True)
sd = {k: v.float() for k, v in load_file(f"{out}/custom_weights.safetensors").items()}
model.load_state_dict(sd)
model.eval()
meta = {"torch": torch.__version__, "timm": timm.__version__, "sizes": {}}
# 77x45: stage maps 19x11, 9x5, 4x2, 2x1 (odd everywhere); 50x200: 12x50, 6x25, 3x12, 1x6.
for i, (h, w) in enumerate([(77, 45), (50, 200)]):
    x = torch.randn((1, 3, h, w), generator=torch.Generator().manual_seed(300 + i))
    with torch.no_grad():
        y = model(x)
        y64 = model.double()(x.double()).float()
        model.float()
    x.numpy().tofile(f"{out}/custom_odd_{h}x{w}_input.bin")
    y.numpy().tofile(f"{out}/custom_odd_{h}x{w}_logits.bin")
    meta["sizes"][f"{h}x{w}"] = dict(f32_vs_f64=float((y - y64).abs().max()),
                                     top5=y[0].topk(5).indices.tolist())
json.dump(meta, open(f"{out}/custom_odd.json", "w"), indent=1)
print(meta)
