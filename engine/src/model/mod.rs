//! A loaded model: its canonical description ([`ModelConfig`]), its weights under canonical
//! (GGUF) names, and its tokenizer. GGUF files and Hugging Face safetensors directories both end
//! here, so there is one constructor for the graph whichever format the weights came in.

mod config;
pub mod hf_names;
mod sampling;
mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use config::{Arch, ModelConfig, SUPPORTED_ARCHS};
pub use sampling::SamplingDefaults;
pub use weights::weight_shapes;

use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsDir;
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
    /// Loads a `.gguf` file, or a Hugging Face directory (config.json + safetensors + tokenizer.json).
    pub fn load(path: &Path) -> Result<Model> {
        if path.is_dir() {
            Self::from_hf_dir(path)
        } else {
            Self::from_gguf(GgufFile::open(path)?, path)
        }
    }

    pub fn from_gguf(file: GgufFile, path: &Path) -> Result<Model> {
        let config = ModelConfig::from_gguf(&file.metadata, file.tensor("output.weight").is_some())?;
        let tokenizer = Tokenizer::from_gguf(&file.metadata)?;
        let mut weights = BTreeMap::new();
        for (name, shape) in weight_shapes(&config) {
            let info = file.tensor(&name).ok_or_else(|| ForgeError::MissingTensor { name: name.clone() })?;
            let t = HostTensor::from_file(info.dtype, info.shape.clone(), file.bytes().clone(), info.offset, info.n_bytes)?;
            weights.insert(name.clone(), checked(&name, t, &shape)?);
        }
        let name = file.metadata.opt_str("general.name")?.map(str::to_string);
        let sampling = SamplingDefaults::from_gguf(&file.metadata);
        Ok(Model { config, weights, tokenizer, source: ModelSource { path: path.to_path_buf(), format: "gguf", name }, sampling })
    }

    pub fn from_hf_dir(dir: &Path) -> Result<Model> {
        let st = SafetensorsDir::open(dir)?;
        let config = ModelConfig::from_hf(&st.config, st.tensor("lm_head.weight").is_some())?;
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        let mut weights = BTreeMap::new();
        for (name, shape) in weight_shapes(&config) {
            let hf = hf_names::hf_name(&name);
            let info = st.tensor(&hf).ok_or_else(|| ForgeError::MissingTensor { name: hf.clone() })?;
            let t = HostTensor::from_bytes(info.dtype, info.shape.clone(), st.tensor_bytes(info).to_vec())?;
            weights.insert(name.clone(), checked(&hf, t, &shape)?);
        }
        let sampling = st.generation_config.as_ref().map(SamplingDefaults::from_hf).unwrap_or_default();
        Ok(Model { config, weights, tokenizer, source: ModelSource { path: dir.to_path_buf(), format: "safetensors", name: None }, sampling })
    }

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

/// Checks a tensor's shape against what the graph expects. Vectors (norms, biases) are read by
/// f32 ops, so they are converted to f32 here whatever their stored type.
fn checked(name: &str, t: HostTensor, shape: &[usize]) -> Result<HostTensor> {
    if t.shape != shape {
        return Err(ForgeError::TensorShape { name: name.to_string(), expected: shape.to_vec(), found: t.shape });
    }
    if shape.len() == 1 && t.dtype != DType::F32 {
        return HostTensor::from_f32(t.shape.clone(), &t.to_f32_vec());
    }
    Ok(t)
}
