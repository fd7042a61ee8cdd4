#!/usr/bin/env bash
# Fuzzes all three page parsers (fuzz_targets/parse.rs) with cargo-fuzz / libFuzzer.
#
#   bash wasm/fuzz/run.sh [RUNS]      default 1000000 inputs
#
# Needs `cargo install cargo-fuzz`; libFuzzer's instrumentation needs nightly flags, which a stable
# toolchain accepts with RUSTC_BOOTSTRAP=1. No sanitizer: the crate forbids unsafe code, and what we
# look for are panics (which abort and are reported as crashes), hangs and runaway memory.
set -euo pipefail
runs=${1:-1000000}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
corpus="$here/corpus/parse"
mkdir -p "$corpus"
# Seeds: the project's fixtures and, when present, the captured pages beside the repository.
cp "$repo"/tests/fixtures/pages/*.html "$corpus"/ 2>/dev/null || true
cp "$repo"/tests/data/ghcr-pages/*.html "$corpus"/ 2>/dev/null || true
cd "$here"
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer none --release parse "$corpus" -- \
  -runs="$runs" -dict="$here/dict.txt" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
