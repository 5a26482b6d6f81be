#!/usr/bin/env python3
"""Extra parity fixtures for sizes the shared oracle does not cover (PyTorch + timm, CPU, f32).

Usage: python3 tools/make_fixtures.py OUT_DIR

Writes, for each case, weights (safetensors), one normalized NCHW input and timm's logits, all raw
little-endian f32 `.bin` like `../shared/oracle`. Noise is added to every parameter (as the oracle
does) so that nothing is an identity, then weights are rounded to the storage dtype *before* the
forward pass, so the reduced-precision file is exact for the logits it ships with.
  femto  : convnextv2_femto, 224x224, 1000 classes, weights stored as f16 (timm names)
  custom : ConvNeXt V2 depths (1,1,3,1) dims (16,32,48,64), 7 classes, 96x128 input,
           weights stored as bf16 (timm names) and as f32 (official facebookresearch names)
"""
import json, os, sys
import torch, timm
from timm.models.convnext import ConvNeXt
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.set_num_threads(8)


def add_noise(model, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".grn." in name:
                std = 0.2
            elif p.ndim == 1 and ("norm" in name or name.startswith("stem.1") or "downsample.0" in name):
                std = 0.1
            elif name.endswith("bias"):
                std = 0.02
            else:
                std = 0.01
            p.add_(torch.randn(p.shape, generator=g) * std)
            p.copy_(p.to(dtype).float())


def official_names(sd):
    """timm -> facebookresearch/ConvNeXt-V2 key names and shapes."""
    o = {}
    for k, v in sd.items():
        n = k
        n = n.replace("stem.0.", "downsample_layers.0.0.").replace("stem.1.", "downsample_layers.0.1.")
        if n.startswith("stages.") and ".downsample." in n:
            i = n.split(".")[1]
            n = n.replace(f"stages.{i}.downsample.", f"downsample_layers.{i}.")
        n = n.replace(".blocks.", ".").replace(".conv_dw.", ".dwconv.")
        n = n.replace(".mlp.fc1.", ".pwconv1.").replace(".mlp.fc2.", ".pwconv2.")
        n = n.replace(".mlp.grn.weight", ".grn.gamma").replace(".mlp.grn.bias", ".grn.beta")
        n = n.replace("head.norm.", "norm.").replace("head.fc.", "head.")
        if ".pwconv" in n and n.endswith("weight"):
            v = v.reshape(v.shape[0], v.shape[1])
        if ".grn." in n:
            v = v.reshape(1, 1, 1, -1)
        o[n] = v.contiguous()
    return o


def case(name, model, dtype, shape, seed, official=False):
    model.eval()
    add_noise(model, seed, dtype)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file({k: v.to(dtype) for k, v in sd.items()}, f"{out}/{name}_weights.safetensors")
    if official:
        save_file(official_names(sd), f"{out}/{name}_official_f32.safetensors")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 100))
    with torch.no_grad():
        y = model(x)
        y64 = model.double()(x.double()).float()
    x.numpy().tofile(f"{out}/{name}_input.bin")
    y.numpy().tofile(f"{out}/{name}_logits.bin")
    meta = dict(shape=list(shape), classes=int(y.shape[1]), dtype=str(dtype),
                f32_vs_f64=float((y - y64).abs().max()), top5=y[0].topk(5).indices.tolist(),
                torch=torch.__version__, timm=timm.__version__)
    json.dump(meta, open(f"{out}/{name}.json", "w"), indent=1)
    print(name, meta)


case("femto", timm.create_model("convnextv2_femto", pretrained=False), torch.float16, (1, 3, 224, 224), 7)
custom = ConvNeXt(depths=(1, 1, 3, 1), dims=(16, 32, 48, 64), num_classes=7, use_grn=True,
                  ls_init_value=None, conv_mlp=True)
case("custom", custom, torch.bfloat16, (1, 3, 96, 128), 11, official=True)
