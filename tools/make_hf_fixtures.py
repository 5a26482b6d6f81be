#!/usr/bin/env python3
"""A tiny Hugging Face transformers ConvNeXt V2 and its ONNX exports, for the import paths of
`quant` (names, ONNX by structure) checked against transformers' own forward pass.

Usage (the CPU PyTorch venv of ../shared/STACK.md, plus `transformers onnx onnxscript`):
    python tools/make_hf_fixtures.py tests/fixtures/extra [fuzz/seeds/weights]

Writes, for ConvNextV2ForImageClassification(depths 1,1,2,1, hidden sizes 16,32,48,64, 5 labels,
exact GELU, the config's default final-LayerNorm eps 1e-12) with seeded noise on every parameter
(GRN's zero init included, so nothing is an identity):
  hf_tiny.safetensors       model.state_dict() as transformers names it (f32)
  hf_tiny_bare.safetensors  the bare ConvNextV2Model inside it (no classifier, no `convnextv2.`)
  hf_tiny_opset17.onnx      torch.onnx.export (TorchScript exporter), opset 17: LayerNormalization
  hf_tiny_opset13.onnx      the same at opset 13: every LayerNorm decomposed by the exporter
  hf_tiny_dynamo.onnx       the torch.export-based exporter (PyTorch's default), opset 18
  hf_tiny_gelu_opset20.onnx the same at opset 20, where GELU is the Gelu op
  hf_tiny_input.bin         one normalized input [1, 3, 64, 96]
  hf_tiny_logits.bin        transformers' logits for it [1, 5]
  hf_tiny.json              versions, shapes, top-5, and the f32-vs-f64 difference of the reference
and, given a second folder, the `weights` fuzz target's ONNX seed there: d1111_c8-16_32px_hf.onnx
(depths 1,1,1,1, hidden sizes 8,16,16,16, 3 labels, 32 px, opset 17).
"""
import json, os, sys
import torch
from safetensors.torch import save_file
import transformers
from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

out = sys.argv[1]


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values).logits


if len(sys.argv) > 2:
    torch.manual_seed(0)
    seed = ConvNextV2ForImageClassification(
        ConvNextV2Config(hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_labels=3)).eval()
    torch.onnx.export(Logits(seed), (torch.randn(1, 3, 32, 32),),
                      f"{sys.argv[2]}/d1111_c8-16_32px_hf.onnx", opset_version=17,
                      input_names=["pixel_values"], output_names=["logits"], dynamo=False)
torch.manual_seed(0)
config = ConvNextV2Config(num_channels=3, patch_size=4, num_stages=4, hidden_sizes=[16, 32, 48, 64],
                          depths=[1, 1, 2, 1], hidden_act="gelu", num_labels=5)
model = ConvNextV2ForImageClassification(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.add_(torch.randn_like(p) * (0.2 if "grn" in name else 0.05))
sd = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(sd, f"{out}/hf_tiny.safetensors")
save_file({k: v.contiguous() for k, v in model.convnextv2.state_dict().items()},
          f"{out}/hf_tiny_bare.safetensors")
x = torch.randn(1, 3, 64, 96)
with torch.no_grad():
    logits = model(x).logits
    logits64 = model.double()(x.double()).logits
    model.float()
x.numpy().astype("<f4").tofile(f"{out}/hf_tiny_input.bin")
logits.numpy().astype("<f4").tofile(f"{out}/hf_tiny_logits.bin")


for opset in (17, 13):
    torch.onnx.export(Logits(model), (x,), f"{out}/hf_tiny_opset{opset}.onnx", opset_version=opset,
                      input_names=["pixel_values"], output_names=["logits"], dynamo=False)
# The torch.export-based exporter, PyTorch's default since 2.9; weights inside the file.
torch.onnx.export(Logits(model), (x,), f"{out}/hf_tiny_dynamo.onnx", opset_version=18,
                  input_names=["pixel_values"], output_names=["logits"], dynamo=True,
                  external_data=False)
# At opset 20 the same exporter writes GELU as the Gelu op.
torch.onnx.export(Logits(model), (x,), f"{out}/hf_tiny_gelu_opset20.onnx", opset_version=20,
                  input_names=["pixel_values"], output_names=["logits"], dynamo=True,
                  external_data=False)
meta = {
    "torch": torch.__version__, "transformers": transformers.__version__,
    "keys": len(sd), "input": [1, 3, 64, 96], "classes": 5,
    "top5": logits[0].topk(5).indices.tolist(),
    "f32_vs_f64": (logits.double() - logits64).abs().max().item(),
}
json.dump(meta, open(f"{out}/hf_tiny.json", "w"), indent=1)
print(meta)
for f in sorted(os.listdir(out)):
    if f.startswith("hf_tiny"):
        print(f, os.path.getsize(f"{out}/{f}"))
