"""PyTorch + timm counterpart of `train bench-step`: the same two training steps, timed the same way.

Atto-style model from timm, forward + label-smoothed CE + backward + AdamW (the supervised step), and
the FCMAE step computed densely (masked input, a one-block decoder, masked MSE on normalised patches),
which is what the Rust side computes. The loss is read back every step, as a training loop does
(and, on CUDA, that read is the synchronisation point).
Usage: python3 scripts/torch_step.py SIZE INPUT BATCH STEPS THREADS DEVICE [BURN_OUTPUT_FILE]
With BURN_OUTPUT_FILE (lines printed by `train bench-step`), prints Burn/PyTorch ratios.
"""
import re
import sys
import time

import timm
import torch

size, s, b, steps, threads, dev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
burn_out = sys.argv[7] if len(sys.argv) > 7 else None
torch.set_num_threads(threads)
torch.manual_seed(0)
m = timm.create_model(f"convnextv2_{size}", drop_path_rate=0.1).to(dev)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.05)
x = torch.randn(b, 3, s, s, device=dev)
y = torch.arange(b, device=dev) % 1000
crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)


def step():
    opt.zero_grad()
    loss = crit(m(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def timed(f):
    for _ in range(2):
        f()
    t = time.time()
    for _ in range(steps):
        f()
    return steps * b / (time.time() - t)


ft = timed(step)
enc = timm.create_model(f"convnextv2_{size}", num_classes=0, global_pool="")
dec = torch.nn.Sequential(
    torch.nn.Conv2d(enc.num_features, 512, 1),
    timm.models.convnext.ConvNeXtBlock(512, use_grn=True, ls_init_value=None),
    torch.nn.Conv2d(512, 32 * 32 * 3, 1),
)
enc, dec = enc.to(dev), dec.to(dev)
opt2 = torch.optim.AdamW(list(enc.parameters()) + list(dec.parameters()), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
L = (s // 32) ** 2


def fstep():
    opt2.zero_grad()
    mask = (torch.rand(b, L, device=dev).argsort(1).argsort(1) >= int(L * 0.4)).float()
    m_img = mask.reshape(b, 1, s // 32, s // 32).repeat_interleave(32, 2).repeat_interleave(32, 3)
    pred = dec(enc.forward_features(x * (1 - m_img))).flatten(2).transpose(1, 2)
    tgt = x.reshape(b, 3, s // 32, 32, s // 32, 32).permute(0, 2, 4, 3, 5, 1).reshape(b, L, -1)
    tgt = (tgt - tgt.mean(-1, keepdim=True)) / (tgt.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = (((pred - tgt) ** 2).mean(-1) * mask).sum() / mask.sum()
    loss.backward()
    opt2.step()
    return loss.item()


fm = timed(fstep)
where = torch.cuda.get_device_name() if dev.startswith("cuda") else f"{threads} threads"
print(f"pytorch {torch.__version__} timm {timm.__version__} {size} {s}px batch {b} on {where}: fine-tune step {ft:.1f} img/s, FCMAE step {fm:.1f} img/s")
if burn_out:
    for line in open(burn_out):
        r = re.findall(r"([0-9.]+) img/s", line)
        if len(r) == 2:
            print(f"  {line.split(':')[0]}: Burn/PyTorch fine-tune {float(r[0]) / ft:.2f}x, FCMAE {float(r[1]) / fm:.2f}x")
