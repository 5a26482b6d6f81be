#!/usr/bin/env bash
# Data-parallel training over MPI on this machine (ranks on 127.0.0.1 only), end to end:
#   1. 2 and 3 ranks on a global batch give the same losses and parameters as one process on it
#      (relative L2 ≤ 1e-5: only float reassociation differs), and identical parameters on every
#      rank (the run compares checksums each epoch and says so);
#   2. a rank killed mid-run stops the whole job (mpirun says which) and the last checkpoint
#      stays loadable;
#   3. that checkpoint resumed with a different rank count (1) continues, and ends within 1e-5
#      of an uninterrupted one-process run;
#   4. the same for FCMAE pretraining (1 process vs 2 ranks);
#   5. throughput: 1 process (2 threads) vs 2 ranks (1 thread each), Atto 64 px, and the
#      all-reduce traffic per step.
# Installs Debian's OpenMPI and libclang (rsmpi's bindgen) when missing; builds train with the
# `mpi` feature (not part of .ci/run: it is not in the default build). Usage: scripts/mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need=(libopenmpi-dev openmpi-bin libclang-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
./scripts/setup-data.sh >/dev/null
cargo build -q -p train --features mpi
bin=target/debug/train   # the dev profile is optimised (opt-level 3)
work=target/mpi-check
rm -rf $work && mkdir -p $work
data=/usr/share/datasets/fashion-mnist
mpirun=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -x PATH)
# Tiny but real: Atto at 32 px on 96 Fashion-MNIST images, global batch 16 (6 steps an epoch).
ft=(finetune --data $data --size atto --input-size 32 --batch 16 --train-subset 96 --test-subset 64
    --drop-path 0 --warmup-epochs 1 --lr 1e-3 --seed 7 --quiet)

echo "== 1. one process vs 2 ranks on the same global batches (2 epochs)"
$bin "${ft[@]}" --epochs 2 --out $work/one > $work/one.log 2>&1
"${mpirun[@]}" -np 2 $bin "${ft[@]}" --epochs 2 --out $work/two > $work/two.log 2>&1
grep -h "parameters identical" $work/two.log
python3 - $work/one/metrics.csv $work/two/metrics.csv <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
for x, y in zip(a, b):
    la, lb = float(x["train_loss"]), float(y["train_loss"])
    print(f"epoch {x['epoch']}: train loss {la:.6f} (1 process) vs {lb:.6f} (2 ranks), test top-1 {x['test_top1']} vs {y['test_top1']}")
    assert abs(la - lb) <= 1e-5 * abs(la), "losses differ"
assert len(a) == len(b) == 2
PY
python3 tools/compare_checkpoints.py $work/one/checkpoint.safetensors $work/two/checkpoint.safetensors --rel 1e-5
# 3 ranks cut each batch of 16 as 5 + 5 + 6 (one process: 8 + 8 on two threads): the sums
# associate differently, so here the match is within rounding, not exact.
"${mpirun[@]}" -np 3 $bin "${ft[@]}" --epochs 2 --out $work/three > $work/three.log 2>&1
grep -h "parameters identical" $work/three.log | tail -1
python3 tools/compare_checkpoints.py $work/one/checkpoint.safetensors $work/three/checkpoint.safetensors --rel 1e-5

echo "== 2. kill -9 of rank 1 during epoch 2 of 4"
"${mpirun[@]}" -np 2 $bin "${ft[@]}" --epochs 4 --out $work/kill > $work/kill.log 2>&1 &
job=$!
for _ in $(seq 600); do [ -f $work/kill/checkpoint.safetensors ] && break; sleep 0.2; done
[ -f $work/kill/checkpoint.safetensors ] || { echo "no checkpoint after the first epoch"; cat $work/kill.log; exit 1; }
victim=""
for p in $(pgrep -f "target/debug/train finetune.*$work/kill"); do
  tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$p
done
[ -n "$victim" ] || { echo "rank 1 not found"; exit 1; }
kill -9 "$victim"
if wait $job; then echo "the job went on after a rank was killed"; exit 1; fi
grep -m1 -i "signal 9\|killed" $work/kill.log
epoch=$(python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(json.loads(f.read(n))['__metadata__']['train_state'])['epoch'])" $work/kill/checkpoint.safetensors)
echo "the last checkpoint is intact: epoch $epoch"

echo "== 3. resume it with 1 process (a different rank count) to epoch 4, vs an uninterrupted run"
$bin "${ft[@]}" --epochs 4 --out $work/kill --resume > $work/resume.log 2>&1
grep -h "resuming" $work/resume.log
$bin "${ft[@]}" --epochs 4 --out $work/straight > $work/straight.log 2>&1
python3 tools/compare_checkpoints.py $work/straight/checkpoint.safetensors $work/kill/checkpoint.safetensors --rel 1e-5

echo "== 4. FCMAE pretraining, one process vs 2 ranks (Atto 64 px, 64 images, 1 epoch)"
pt=(pretrain --data $data --size atto --input-size 64 --batch 16 --train-subset 64 --epochs 1 --seed 7 --quiet)
$bin "${pt[@]}" --out $work/pt1 > $work/pt1.log 2>&1
"${mpirun[@]}" -np 2 $bin "${pt[@]}" --out $work/pt2 > $work/pt2.log 2>&1
grep -h "parameters identical" $work/pt2.log
grep -h "final:" $work/pt1.log $work/pt2.log
python3 tools/compare_checkpoints.py $work/pt1/checkpoint.safetensors $work/pt2/checkpoint.safetensors --rel 1e-5

echo "== 5. throughput on this host: Atto 64 px, global batch 32, 512 images, 1 epoch"
bench=(finetune --data $data --size atto --input-size 64 --batch 32 --train-subset 512 --test-subset 64
       --epochs 1 --seed 7 --quiet)
$bin "${bench[@]}" --out $work/bench1 2>&1 | grep -o "[0-9.]* img/s" | head -1 | sed 's/^/1 process, 2 threads: /'
"${mpirun[@]}" -np 2 $bin "${bench[@]}" --out $work/bench2 > $work/bench2.log 2>&1
grep -o "[0-9.]* img/s" $work/bench2.log | head -1 | sed 's/^/2 ranks, 1 thread each: /'
grep -h "^MPI:" $work/bench2.log
echo "== MPI checks passed"
