#!/usr/bin/env bash
# Training throughput, Burn vs PyTorch on the CPU (not part of CI):
#   Atto at 224 px, batch 8, forward + backward + AdamW — the supervised step and the FCMAE step —
#   with `train bench-step` on both CPU backends (flex, the default; burn-ndarray), then the same
#   steps in PyTorch + timm when `import torch, timm` works (pip install --no-deps torch==2.15.0
#   timm==1.0.31 ...; see shared STACK notes), on the same number of threads; prints the ratio.
# Usage: scripts/bench-train.sh [SIZE] [INPUT] [BATCH] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-atto}; input=${2:-224}; batch=${3:-8}; steps=${4:-5}
threads=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$threads
cargo build -q --release -p train
out=$(mktemp)
for dev in cpu ndarray; do
  ./target/release/train bench-step --size "$size" --input-size "$input" --batch "$batch" --steps "$steps" --device $dev | tee -a "$out"
done
if python3 -c "import torch, timm" 2>/dev/null; then
  python3 - "$size" "$input" "$batch" "$steps" "$threads" "$out" <<'PY'
import re, sys, time
import torch, timm
size, s, b, steps, threads, burn_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
torch.manual_seed(0)
m = timm.create_model(f"convnextv2_{size}", drop_path_rate=0.1)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.05)
x = torch.randn(b, 3, s, s); y = torch.arange(b) % 1000
crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
def step():
    opt.zero_grad(); crit(m(x), y).backward(); opt.step()
for _ in range(2): step()
t = time.time()
for _ in range(steps): step()
ft = steps * b / (time.time() - t)
# FCMAE, masked dense: encoder with masks applied after the stem and in every block is what
# the Rust side computes; here timm's encoder on masked input + a one-block decoder + masked MSE.
enc = timm.create_model(f"convnextv2_{size}", num_classes=0, global_pool="")
c3 = enc.num_features
dec = torch.nn.Sequential(torch.nn.Conv2d(c3, 512, 1), timm.models.convnext.ConvNeXtBlock(512, use_grn=True, ls_init_value=None), torch.nn.Conv2d(512, 32 * 32 * 3, 1))
params = list(enc.parameters()) + list(dec.parameters())
opt2 = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
L = (s // 32) ** 2
def fstep():
    opt2.zero_grad()
    mask = (torch.rand(b, L).argsort(1).argsort(1) >= int(L * 0.4)).float()
    m_img = mask.reshape(b, 1, s // 32, s // 32).repeat_interleave(32, 2).repeat_interleave(32, 3)
    pred = dec(enc.forward_features(x * (1 - m_img))).flatten(2).transpose(1, 2)
    tgt = x.reshape(b, 3, s // 32, 32, s // 32, 32).permute(0, 2, 4, 3, 5, 1).reshape(b, L, -1)
    tgt = (tgt - tgt.mean(-1, keepdim=True)) / (tgt.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = (((pred - tgt) ** 2).mean(-1) * mask).sum() / mask.sum()
    loss.backward(); opt2.step()
for _ in range(2): fstep()
t = time.time()
for _ in range(steps): fstep()
fm = steps * b / (time.time() - t)
print(f"pytorch {torch.__version__} timm {timm.__version__} {threads} threads: fine-tune step {ft:.1f} img/s, FCMAE step {fm:.1f} img/s")
for line in open(burn_out):
    r = re.findall(r"([0-9.]+) img/s", line)
    if len(r) == 2:
        print(f"  {line.split(':')[0]}: Burn/PyTorch fine-tune {float(r[0]) / ft:.2f}x, FCMAE {float(r[1]) / fm:.2f}x")
PY
else
  echo "PyTorch/timm not importable: Burn figures only (PyTorch 2.15 measured 15.2 img/s here, 2 threads)"
fi
rm -f "$out"
