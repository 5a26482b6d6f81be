#!/usr/bin/env bash
# The co-design table of ConvNeXt V2 (FCMAE × GRN) on Fashion-MNIST, CPU, resumable:
#   for GRN in {on, off}: FCMAE-pretrain Atto on the training images WITHOUT labels (all 60,000 by
#   default), export the encoder, then for init in {FCMAE, random}:
#     - `train probe` (frozen encoder, pooled features, linear classifier on all labels), top-1 on
#       all 10,000 test images;
#     - few-label fine-tuning on LABELS labelled images (default 600 = 1 % and 6,000 = 10 %), one run
#       per seed in SEEDS, the same recipe and step budget for both inits, top-1 on the whole test set.
#   Writes OUT/table.md (mean ± standard error over seeds) and OUT/results.csv; every command it runs
#   is printed (and kept in OUT/grn-*/log.txt with its wall time). Rerunning resumes: pretraining
#   continues from its checkpoint (`--resume`; raising PT_EPOCHS later stretches the cosine
#   schedule of the epochs still to run), finished probes and fine-tunes are kept.
# The defaults are the README's table: ~2 h on 2 cores (54 min of it pretraining).
# Budgets (env): SIZE (input px, 96 = 3×3 patches of 32, 3 visible at mask 0.6; 128 = 4×4, 6 visible),
#   PT_IMAGES, PT_EPOCHS, PT_BATCH, PT_LR, PROBE_TRAIN, PROBE_TEST (probe images; empty = all), LABELS,
#   SEEDS, FT_STEPS (optimizer steps per fine-tune, batch FT_BATCH, rounded to whole epochs), TEST (test
#   images; empty = all), JOBS (1: the two GRN chains one after the other).
#   QUICK=1: a smoke run of every stage at 64 px on a few hundred images (minutes, numbers meaningless).
# Usage: scripts/codesign.sh [OUT_DIR]   (TRAIN_BIN=path to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/codesign}
if [ "${QUICK:-0}" = 1 ]; then
  : "${SIZE:=64}" "${PT_IMAGES:=256}" "${PT_EPOCHS:=1}" "${PROBE_TRAIN:=512}" "${PROBE_TEST:=256}"
  : "${LABELS:=64}" "${SEEDS:=0 1}" "${FT_STEPS:=4}" "${TEST:=256}"
fi
size=${SIZE:-96}
pt_n=${PT_IMAGES:-60000}; pt_e=${PT_EPOCHS:-3}; pt_b=${PT_BATCH:-64}
probe_train=${PROBE_TRAIN:-}; probe_test=${PROBE_TEST:-}
labels=${LABELS:-600 6000}; seeds=${SEEDS:-0 1 2}
ft_steps=${FT_STEPS:-80}; ft_b=${FT_BATCH:-64}; test_n=${TEST:-}
bin=${TRAIN_BIN:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p train
  bin=./target/release/train
fi
fm=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out"
run() { echo "+ $*" >&2; local t=$SECONDS; "$@"; echo "  ($((SECONDS - t)) s)" >&2; }
subset() { [ -n "$2" ] && echo "$1 $2" || true; }

# One chain per GRN setting: pretrain, export, then the probes and fine-tunes of both inits.
chain() {
  local grn=$1 g=() pt init w p i n epochs seed d
  [ "$grn" = off ] && g=(--no-grn)
  pt=$out/grn-$grn/pretrain
  echo "== GRN $grn: FCMAE pretraining, $pt_n unlabeled images × $pt_e epochs at $size px" >&2
  run "$bin" pretrain --size atto --data "$fm" --input-size "$size" --train-subset "$pt_n" \
    --epochs "$pt_e" --batch "$pt_b" --lr "${PT_LR:-1.5e-3}" --warmup-epochs "$(python3 -c "print(min(1.0, $pt_e / 10))")" \
    --vis-every 0 --seed 0 --quiet --resume --out "$pt" "${g[@]}" | tail -1 >&2
  run "$bin" export --checkpoint "$pt/checkpoint.safetensors" --out "$out/grn-$grn/encoder.safetensors" >/dev/null
  for init in fcmae random; do
    w=(); [ $init = fcmae ] && w=(--weights "$out/grn-$grn/encoder.safetensors")
    p=$out/grn-$grn/probe-$init.json
    if [ ! -s "$p" ]; then
      # shellcheck disable=SC2046
      run "$bin" probe --size atto --data "$fm" --input-size "$size" "${w[@]}" "${g[@]}" \
        $(subset --train-subset "$probe_train") $(subset --test-subset "$probe_test") --json "$p" >&2
    fi
    i=(); [ $init = fcmae ] && i=(--init "$out/grn-$grn/encoder.safetensors")
    for n in $labels; do
      # The whole epochs of n images nearest to FT_STEPS·FT_BATCH images (one epoch is
      # ceil(n / FT_BATCH) steps: 600 labels get 9 epochs of 10 steps for FT_STEPS=80).
      epochs=$(( (ft_steps * ft_b + n / 2) / n )); [ "$epochs" -ge 1 ] || epochs=1
      for seed in $seeds; do
        d=$out/grn-$grn/ft-$init-$n-seed$seed
        [ -s "$d/result.txt" ] && continue
        # shellcheck disable=SC2046
        run "$bin" finetune --size atto --data "$fm" --input-size "$size" "${i[@]}" "${g[@]}" \
          --train-subset "$n" $(subset --test-subset "$test_n") --epochs "$epochs" --batch "$ft_b" \
          --lr 2e-3 --warmup-epochs "$(python3 -c "print($epochs / 10)")" --weight-decay 0.05 \
          --layer-decay 0.9 --drop-path 0.1 --label-smoothing 0.1 --ema 0 --crop-scale-min 0.5 \
          --eval-every 0 --seed "$seed" --quiet --out "$d" | tail -1 > "$d.log"
        sed -n 's/.*test top-1 \([0-9.]*\)%.*/\1/p' "$d.log" | tail -1 > "$d/result.txt"
        rm -f "$d.log" "$d/checkpoint.safetensors"
      done
    done
  done
}

# The two chains share nothing: with JOBS=2 (the default on 2 or more cores) they run side by side,
# each with RAYON_NUM_THREADS at half the cores (Burn's CPU backend gains little from a second
# rayon thread at these sizes: `train bench-step` at 96 px batch 64 gave 66.5 img/s with
# RAYON_NUM_THREADS=1, 76.1 with 2).
cores=$(nproc)
jobs=${JOBS:-$(( cores >= 2 ? 2 : 1 ))}
threads=$(( jobs >= 2 ? cores / 2 : cores ))
pids=(); failed=0
for grn in on off; do
  mkdir -p "$out/grn-$grn"
  (export RAYON_NUM_THREADS=$threads; chain $grn 2> >(tee -a "$out/grn-$grn/log.txt" >&2)) &
  if [ "$jobs" -ge 2 ]; then pids+=($!); else wait $! || { failed=1; break; }; fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ $failed = 0 ] || { echo "a chain failed: see $out/grn-*/log.txt" >&2; exit 1; }

python3 - "$out" "$labels" "$seeds" <<'PY'
import json, math, os, sys
out, labels, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def mean_se(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))
rows, csv = [], ["grn,init,protocol,labels,seed,top1"]
for grn in ["on", "off"]:
    for init in ["fcmae", "random"]:
        d = os.path.join(out, f"grn-{grn}")
        p = json.load(open(os.path.join(d, f"probe-{init}.json")))
        # The probe is deterministic given the features: its standard error is the binomial one
        # of the test set.
        se = math.sqrt(p["top1"] * (1 - p["top1"]) / p["test_images"])
        csv.append(f"{grn},{init},probe,all,0,{p['top1'] * 100:.2f}")
        cells = [f"{100 * p['top1']:.2f} ± {100 * se:.2f}"]
        for n in labels:
            xs = []
            for s in seeds:
                v = float(open(os.path.join(d, f"ft-{init}-{n}-seed{s}", "result.txt")).read())
                xs.append(v)
                csv.append(f"{grn},{init},finetune,{n},{s},{v:.2f}")
            m, e = mean_se(xs)
            cells.append(f"{m:.2f} ± {e:.2f}")
        rows.append(f"| {grn} | {'FCMAE' if init == 'fcmae' else 'random'} | " + " | ".join(cells) + " |")
probe_n = json.load(open(os.path.join(out, "grn-on", "probe-fcmae.json")))["train_images"]
head = f"| GRN | init | linear probe ({probe_n} labelled images) | " + " | ".join(f"fine-tune, {n} labels ({len(seeds)} seeds)" for n in labels) + " |"
sep = "|" + "---|" * (3 + len(labels))
table = "\n".join([head, sep] + rows) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
open(os.path.join(out, "results.csv"), "w").write("\n".join(csv) + "\n")
print(table, end="")
print("top-1 in %, mean ± standard error (probe: binomial s.e. of the test set; fine-tunes: over seeds)")
PY
