#!/usr/bin/env bash
# Usage: fuzz/run.sh [SECONDS [TARGET...]]. Runs each fuzz target (default: all) for SECONDS
# (default 120), starting from the committed seeds in
# fuzz/corpus/<target>/; inputs it discovers go to fuzz/corpus-work/<target>/ (not committed), new
# crashes to fuzz/artifacts/<target>/. Copy each crash into fuzz/regressions/<target>/ so that
# `cargo test` replays it forever (tests/tests/fuzz_regressions.rs). Not run in CI.
# Needs: rustup toolchain nightly, cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
targets=("${@:2}")
[ ${#targets[@]} -gt 0 ] || targets=(gguf safetensors chat_template server_request)
found=0
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "artifacts/$t"
  echo "== $t for ${secs}s"
  # A finding ends this target's run, not the others'.
  if ! cargo +nightly fuzz run "$t" "corpus-work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 > "artifacts/$t.log" 2>&1; then
    found=1
    echo "   FOUND something: artifacts/$t.log"
  fi
  grep -E '^(Done|==[0-9]+== ERROR|SUMMARY)|deadly signal|Timeout|panicked' "artifacts/$t.log" | tail -n 4
done
exit $found
