#!/usr/bin/env bash
# The project's test command (README): installs what it needs, then builds and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== host: build, lint and test the workspace (x86-64, Rust stable)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
echo "== all tests passed"
