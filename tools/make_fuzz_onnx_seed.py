#!/usr/bin/env python3
"""An ONNX seed for the `weights` fuzz target: a tiny Hugging Face ConvNeXt V2 (depths 1,1,1,1,
hidden sizes 8,16,16,16, 3 labels, 32 px) exported by torch.onnx (TorchScript exporter, opset 17).

Usage (the CPU PyTorch venv of ../shared/STACK.md plus transformers, onnx):
    python tools/make_fuzz_onnx_seed.py fuzz/seeds/weights
"""
import sys
import torch
from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

torch.manual_seed(0)
config = ConvNextV2Config(hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_labels=3)
model = ConvNextV2ForImageClassification(config).eval()


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values).logits


path = f"{sys.argv[1]}/d1111_c8-16_32px_hf.onnx"
torch.onnx.export(Logits(model), (torch.randn(1, 3, 32, 32),), path, opset_version=17,
                  input_names=["pixel_values"], output_names=["logits"], dynamo=False)
print(path)
