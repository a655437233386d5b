//! `Model::load`: a GGUF file or a Hugging Face directory through its family's config reader and
//! weight list. Defined here, over `model::Model`, because loading needs the families and the
//! model's description must not (see ARCHITECTURE.md, "Layers").

use std::collections::BTreeMap;
use std::path::Path;

use super::{HfWeight, by_gguf_arch, by_hf_model_type};
use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::formats::gguf::{GgufFile, Metadata};
use crate::formats::safetensors::SafetensorsDir;
use crate::model::{Model, ModelConfig, ModelSource, SamplingDefaults};
use crate::tensor::HostTensor;
use crate::tokenizer::Tokenizer;

/// The config of a GGUF model by its family (`general.architecture`); `has_tensor` says whether
/// the file has a tensor of that name.
pub fn config_from_gguf(meta: &Metadata, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    let arch = meta.str("general.architecture")?;
    (by_gguf_arch(arch)?.from_gguf)(meta, arch, has_tensor)
}

/// The config of a Hugging Face model by its family (`model_type`).
pub fn config_from_hf(config: &serde_json::Value, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    let model_type = config.get("model_type").and_then(|v| v.as_str()).ok_or_else(|| ForgeError::MissingMetadata { key: "config.json: model_type".into() })?;
    (by_hf_model_type(model_type)?.from_hf)(config, model_type, has_tensor)
}

impl Model {
    /// Loads a `.gguf` file, or a Hugging Face directory (config.json + safetensors + tokenizer.json).
    pub fn load(path: &Path) -> Result<Model> {
        if path.is_dir() { Self::from_hf_dir(path) } else { Self::from_gguf(GgufFile::open(path)?, path) }
    }

    pub fn from_gguf(file: GgufFile, path: &Path) -> Result<Model> {
        let config = config_from_gguf(&file.metadata, &|n| file.tensor(n).is_some())?;
        let tokenizer = Tokenizer::from_gguf(&file.metadata)?;
        let mut weights = BTreeMap::new();
        for spec in (super::of(&config)?.weights)(&config) {
            let name = spec.name;
            let info = file.tensor(&name).ok_or_else(|| ForgeError::MissingTensor { name: name.clone() })?;
            let t = HostTensor::from_file(info.dtype, info.shape.clone(), file.bytes().clone(), info.offset, info.n_bytes)?;
            weights.insert(name.clone(), checked(&name, t, &spec.shape, 0.0)?);
        }
        let name = file.metadata.opt_str("general.name")?.map(str::to_string);
        let sampling = SamplingDefaults::from_gguf(&file.metadata);
        Ok(Model { config, weights, tokenizer, source: ModelSource { path: path.to_path_buf(), format: "gguf", name }, sampling })
    }

    pub fn from_hf_dir(dir: &Path) -> Result<Model> {
        let st = SafetensorsDir::open(dir)?;
        let config = config_from_hf(&st.config, &|n| st.tensor(n).is_some())?;
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        let mut weights = BTreeMap::new();
        for spec in (super::of(&config)?.weights)(&config) {
            let t = match spec.hf {
                HfWeight::Tensor { name: hf, shift } => {
                    let info = st.tensor(&hf).ok_or_else(|| ForgeError::MissingTensor { name: hf.clone() })?;
                    let t = HostTensor::from_bytes(info.dtype, info.shape.clone(), st.tensor_bytes(info).to_vec())?;
                    checked(&hf, t, &spec.shape, shift)?
                }
                HfWeight::Computed(values) => HostTensor::from_f32(spec.shape.clone(), &values)?,
            };
            weights.insert(spec.name, t);
        }
        let sampling = st.generation_config.as_ref().map(SamplingDefaults::from_hf).unwrap_or_default();
        Ok(Model { config, weights, tokenizer, source: ModelSource { path: dir.to_path_buf(), format: "safetensors", name: None }, sampling })
    }
}

/// Checks a tensor's shape against what the graph expects. Vectors (norms, biases, RoPE factors)
/// are read by f32 ops, so they are converted to f32 here whatever their stored type, and
/// `shift` is added to them (Gemma's Hugging Face norms).
fn checked(name: &str, t: HostTensor, shape: &[usize], shift: f32) -> Result<HostTensor> {
    if t.shape != shape {
        return Err(ForgeError::TensorShape { name: name.to_string(), expected: shape.to_vec(), found: t.shape });
    }
    if shape.len() == 1 && (t.dtype != DType::F32 || shift != 0.0) {
        let v: Vec<f32> = t.to_f32_vec().into_iter().map(|x| x + shift).collect();
        return HostTensor::from_f32(t.shape.clone(), &v);
    }
    if shift != 0.0 {
        return Err(ForgeError::Malformed { format: "model", what: format!("tensor `{name}`: a shift applies only to vectors") });
    }
    Ok(t)
}
