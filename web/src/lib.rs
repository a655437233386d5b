//! Forge in the browser: the engine compiled to `wasm32-unknown-unknown`, running on the
//! page's WebGPU through the wgpu backend, exposed to JavaScript with wasm-bindgen.
//!
//! Code map: `options.rs` (the settings JavaScript sends, as JSON; plain Rust, tested natively),
//! `forced.rs` (what `forcedLogits` returns of a teacher-forced prefill; plain Rust, tested
//! natively), `bindings.rs` (the `Forge` class and `adapterInfo`), `console.rs` (engine warnings
//! and errors to the browser console), `stop.rs` (a backend wrapper that turns a stop request
//! into an error before the next forward pass). `www/` is the demo page, `build.sh` builds the
//! page into `web/dist/`, `serve.py` serves it with the models, and `test/browser.mjs` drives it
//! in headless Chromium.
//!
//! **Architecture Invariant:** only this crate knows wasm-bindgen and the browser. Natively it
//! compiles to `options.rs` and `forced.rs` alone, so the workspace builds and tests it like any
//! other crate. Nothing here blocks: model bytes arrive from JavaScript, and every forward pass
//! is awaited (`generate_async`, `forward_async`: the GPU readback is `map_async`, resolved by the
//! browser's event loop).

pub mod forced;
pub mod options;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod console;
#[cfg(target_arch = "wasm32")]
mod stop;

pub use forced::ForcedRows;
pub use options::{Message, WebOptions};
