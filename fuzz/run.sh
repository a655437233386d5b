#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 120) each, starting from the committed seeds in
# fuzz/corpus/<target>/; inputs it discovers go to fuzz/corpus-work/<target>/ (not committed), new
# crashes to fuzz/artifacts/<target>/. Copy each crash into fuzz/regressions/<target>/ so that
# `cargo test` replays it forever (tests/tests/fuzz_regressions.rs). Not run in CI.
# Needs: rustup toolchain nightly, cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
for t in gguf safetensors chat_template server_request; do
  mkdir -p "corpus-work/$t" "artifacts/$t"
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus-work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 2>&1 | tail -n 4
done
