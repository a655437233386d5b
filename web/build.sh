#!/usr/bin/env bash
# Builds the browser demo into web/dist/: forge_web.wasm + its JS glue (web/dist/pkg/) and the
# page (web/www/). Installs the wasm32 target and wasm-bindgen-cli (at exactly the version of the
# `wasm-bindgen` crate in Cargo.lock) when missing. Serve with `python3 web/serve.py`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  # --locked pins the CLI's own dependencies; a registry mirror that lacks one of them still
  # gets the right CLI version without it.
  cargo install wasm-bindgen-cli --version "$version" --locked || cargo install wasm-bindgen-cli --version "$version"
fi

# Size over speed for the download; getrandom's backend is chosen in .cargo/config.toml.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=false
cargo build --release -p forge-web --target wasm32-unknown-unknown

target_dir="${CARGO_TARGET_DIR:-target}"
rm -rf web/dist
mkdir -p web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist/pkg "$target_dir/wasm32-unknown-unknown/release/forge_web.wasm"
cp -r web/www/. web/dist/

wasm=web/dist/pkg/forge_web_bg.wasm
echo "web/dist: forge_web_bg.wasm $(wc -c < "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped"
