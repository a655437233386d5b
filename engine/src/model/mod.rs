//! A loaded model: its canonical description ([`ModelConfig`]), its weights under canonical
//! (GGUF) names, and its tokenizer. GGUF files and Hugging Face safetensors directories both end
//! here, so there is one graph whichever format the weights came in. `Model::load` is in
//! `models::load`: it reads files through the model families, which this module does not know.

mod config;
mod sampling;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use config::{GgufKeys, HfKeys, LayerConfig, MAX_CTX, MAX_DIM, MAX_HEADS, MAX_LAYERS, MAX_VOCAB, ModelConfig, RopeFactors, capped, llama3_rope_factors, positive};
pub use sampling::SamplingDefaults;

use crate::dtype::DType;
use crate::tensor::HostTensor;
use crate::tokenizer::Tokenizer;

/// Where a model came from, for reports.
#[derive(Clone, Debug)]
pub struct ModelSource {
    pub path: PathBuf,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    /// The file's name for the model (`general.name`), if any.
    pub name: Option<String>,
}

/// Where downloaded models live: `FORGE_MODEL_DIR`, else `$XDG_CACHE_HOME/forge/models`, else
/// `~/.cache/forge/models`. `env` reads a variable (the binary passes the process environment).
pub fn model_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(d) = env("FORGE_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("forge").join("models")
}

#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    /// Weights by canonical name (`blk.0.attn_q.weight`), checked against the graph's needs.
    pub weights: BTreeMap<String, HostTensor>,
    pub tokenizer: Tokenizer,
    pub source: ModelSource,
    /// The sampling the model's files recommend (often none).
    pub sampling: SamplingDefaults,
}

impl Model {
    /// Total bytes of the weights as stored.
    pub fn weight_bytes(&self) -> usize {
        self.weights.values().map(|t| t.as_bytes().len()).sum()
    }

    /// The storage types of the weights and how many tensors have each.
    pub fn dtype_counts(&self) -> BTreeMap<DType, usize> {
        let mut m = BTreeMap::new();
        for t in self.weights.values() {
            *m.entry(t.dtype).or_insert(0) += 1;
        }
        m
    }
}
