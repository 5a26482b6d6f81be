#!/usr/bin/env bash
# One Atto-224 image split across 1, 2 and 4 workers under qemu-aarch64: the critical path in
# executed instructions (the calling thread's own work plus, for every operator call, its
# busiest worker) and the work of all threads together (its growth is what splitting costs),
# then per operator kind, for the largest worker count, where the imbalance is.
#
# `edge-bench --critical-path N` runs each operator call on N threads spawned for it, task t on
# thread t mod N (a fixed schedule), and joins them before the next call; the counting plugin's
# per_thread=exit mode prints each thread's count as it exits, so the exits come in sets of N,
# one set per call, and every count is one (call, worker), whatever the host's scheduler does.
# (A work-stealing pool under emulation is not a measure: with more guest threads than host
# cores, the threads the host happens to run take the others' tasks.) Thread start-up is
# subtracted (two sets of N threads that run nothing, spawned first), and so is the calling
# thread's cost of starting and joining a set per call (a persistent pool has none). The calling
# thread's work per image = (its count with 3 images − with 1) / 2.
# f32 NEON and int8 built for ARMv8.2 (+dotprod,+fp16: SDOT GEMMs, native fp16 GRN;
# RUSTC_BOOTSTRAP on Rust 1.96); the int8 model is calibrated on 16 Fashion-MNIST images
# (scripts/setup-data.sh).
# Usage: benches/qemu/threads.sh [QEMU_CPU, default cortex-a76]   (THREADS="1 2 4" to change)
set -euo pipefail
cd "$(dirname "$0")/../.."
cpu=${1:-cortex-a76}
threads=${THREADS:-1 2 4}
work=target/qemu-insns
mkdir -p $work
gcc -shared -fPIC -O2 -o $work/insn_count.so benches/qemu/insn_count.c
cargo build -q -p quant
cargo +deb196 build -q --release -p edge-bench --target aarch64-unknown-linux-gnu
RUSTC_BOOTSTRAP=1 CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+dotprod,+fp16" \
  cargo +deb196 build -q --release -p edge-bench --features dotprod --target aarch64-unknown-linux-gnu \
  --target-dir target/aarch64-dotprod
v80=target/aarch64-unknown-linux-gnu/release/edge-bench
v82=target/aarch64-dotprod/aarch64-unknown-linux-gnu/release/edge-bench
w=tests/fixtures/atto/weights.safetensors
./target/debug/quant convert --weights $w --out $work/atto.cnx >/dev/null
[ -f $work/atto_i8.cnx ] || ./target/debug/quant calibrate --weights $w --images /usr/share/datasets/fashion-mnist \
  --num 16 --eval 0 --quiet --out $work/atto_i8.cnx >/dev/null
input=tests/fixtures/atto/inputs/astronaut.bin
# One run: per-thread counts ("vcpu count" lines) to $1.counts, edge-bench's stdout to $1.out.
run() {
  local out=$1; shift
  env -i QEMU_CPU=$cpu qemu-aarch64 -plugin $work/insn_count.so,per_thread=exit "$@" 2>$out.err >$out.out
}
for kind in f32 int8; do
  if [ $kind = f32 ]; then bin=$v80; model=$work/atto.cnx; label="f32 NEON"
  else bin=$v82; model=$work/atto_i8.cnx; label="int8 NEON ARMv8.2 (SDOT, fp16)"; fi
  for t in $threads; do
    args=(--model $model --input $input --kernels neon --critical-path $t --warmup 0)
    run $work/cp_${kind}_${t}_1 $bin "${args[@]}" --iters 1
    run $work/cp_${kind}_${t}_3 $bin "${args[@]}" --iters 3
  done
done
python3 - "$work" "$threads" <<'PY'
import re, sys
work, threads = sys.argv[1], [int(t) for t in sys.argv[2].split()]
def load(kind, t, iters):
    p = f"{work}/cp_{kind}_{t}_{iters}"
    err = open(p + ".err").read()
    main = int(re.search(r"^insn_count vcpu 0: (\d+)$", err, re.M).group(1))
    found = re.findall(r"^insn_count exit \d+: (\d+) main (\d+)$", err, re.M)
    exits = [(int(n), int(m)) for n, m in found]
    calls = [m.group(1) for m in (re.match(r"critical-path call \d+ step \d+ kind (.+) op ", l)
                                  for l in open(p + ".out")) if m]
    return main, exits, calls
def analyse(kind, t):
    main1, exits, calls = load(kind, t, 1)
    main3, _, _ = load(kind, t, 3)
    main = (main3 - main1) / 2
    if t == 1:
        return main, main, {}
    assert len(exits) == t * (len(calls) + 2), "thread exits ≠ workers × (calls + 2)"
    # Two empty sets first: a thread's start-up, and the calling thread's cost of one set
    # (read at the sets' last exits, while it waits in a join: an estimate, within a few
    # thousand instructions per call).
    base = sum(n for n, _ in exits[:2 * t]) / (2 * t)
    spawn = exits[2 * t - 1][1] - exits[t - 1][1]
    main -= spawn * len(calls)
    cp, total, kinds = main, main, {}
    for k, name in enumerate(calls):
        per = [exits[t * (k + 2) + w][0] - base for w in range(t)]
        cp += max(per); total += sum(per)
        s = kinds.setdefault(name, [0.0, 0.0])
        s[0] += max(per); s[1] += sum(per) / t
    kinds["(calling thread: between calls)"] = [main, main]
    return cp, total, kinds
print(f"{'Atto 224, per image':<32} {'workers':>7} {'critical path':>14} {'÷ 1 worker':>10} {'all threads':>12} {'÷ 1 worker':>10}")
per_kind = {}
for kind, label in [("f32", "f32 NEON"), ("int8", "int8 NEON ARMv8.2 (SDOT, fp16)")]:
    base = None
    for t in threads:
        cp, total, kinds = analyse(kind, t)
        base = base or cp
        print(f"{label:<32} {t:>7} {cp/1e6:>12.1f} M {cp/base:>10.3f} {total/1e6:>10.1f} M {total/base:>10.3f}")
        per_kind[label] = (t, kinds)
for label, (t, kinds) in per_kind.items():
    print(f"\n{label}, {t} workers, by operator kind: critical path (Σ over calls of the busiest worker)")
    print(f"  {'kind':<34} {'critical path':>14} {'mean worker':>12} {'imbalance':>10}")
    for name, (mx, mean) in kinds.items():
        print(f"  {name:<34} {mx/1e6:>12.2f} M {mean/1e6:>10.2f} M {mx/max(mean,1):>10.3f}")
PY
echo "(QEMU_CPU=$cpu; instructions are not time: no memory effects, no IPC)"
