#!/usr/bin/env bash
# Fuzzes every parser edge and quant expose (not part of CI, which runs tests/fuzz_smoke.rs):
#   parse            edge model files (f32 and int8), mutated bytes, seeds fuzz/seeds/parse
#   parse_structured arbitrary tiny architectures → f32/int8 files → flipped/truncated/resealed
#   weights          safetensors, .pth and ONNX readers behind `quant convert`, seeds fuzz/seeds/weights
#   image            the image front end (JPEG/PNG/PNM), seeds fuzz/seeds/image
# Usage: [SANITIZER=address|none] scripts/fuzz.sh [SECONDS_PER_TARGET=600] [TARGET...]
#   SANITIZER=none: no ASan, for throughput; Rust's bounds checks and panics still count as
#   crashes, only out-of-bounds accesses in unsafe code would go unseen.
#   FORK=N: N fuzzing processes on one corpus (libFuzzer's -fork; totals in its last "#N" line).
# Needs nightly Rust and cargo-fuzz (`rustup toolchain install nightly; cargo install cargo-fuzz`).
# Memory cap: -rss_limit_mb=2048 (a decompression bomb or absurd header must not get past it).
# Prints, per target, libFuzzer's final stats: executions, coverage (cov = edges), crashes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse parse_structured weights image)
san=${SANITIZER:-address}
fork=${FORK:-}
mkdir -p logs
for t in "${targets[@]}"; do
  # One target at a time: the seed writer (a plain bin) does not link without ASan.
  cargo +nightly fuzz build -O -s "$san" "$t"
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run -O -s "$san" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 ${fork:+-fork=$fork} \
    >"logs/$t.log" 2>&1 || { echo "$t: FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t/)"; exit 1; }
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "logs/$t.log" || true
  grep -E "^#[0-9]+(:|[[:space:]]+DONE)" "logs/$t.log" | tail -n 1 || true
done
