//! The canonical description of a decoder-only transformer, whichever file it came from.
//!
//! GGUF metadata (`{arch}.block_count`, …) and Hugging Face `config.json` both map onto
//! [`ModelConfig`]; the graph builder reads nothing else.

use crate::error::{ForgeError, Result};
use crate::formats::gguf::Metadata;
use crate::graph::RopeLayout;

pub const SUPPORTED_ARCHS: &str = "llama, mistral, qwen2";

/// Caps on hyperparameters read from files, so a hostile file fails before it allocates.
const MAX_LAYERS: u64 = 1024;
const MAX_DIM: u64 = 1 << 17;
const MAX_HEADS: u64 = 1024;
const MAX_VOCAB: u64 = 1 << 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM2, and Mistral (same graph; Mistral's sliding window is not used at the
    /// context lengths this engine runs).
    Llama,
    /// Qwen2: Llama plus biases on q, k and v, NeoX RoPE.
    Qwen2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    /// The architecture name as the file spells it (`llama`, `mistral`, `qwen2`).
    pub arch_name: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    /// Context length the model was trained with.
    pub ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub rope_layout: RopeLayout,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// The output projection reuses the token embedding.
    pub tied_embeddings: bool,
}

fn arch_of(name: &str) -> Result<Arch> {
    match name {
        "llama" | "mistral" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        _ => Err(ForgeError::UnknownArchitecture { arch: name.to_string(), supported: SUPPORTED_ARCHS }),
    }
}

fn capped(key: &str, v: u64, max: u64) -> Result<usize> {
    if v == 0 || v > max {
        return Err(ForgeError::TooLarge { format: "model", what: key.to_string(), value: v, limit: max });
    }
    Ok(v as usize)
}

/// The head width where the file gives none: the model width split evenly over the heads.
/// Checked here, with the metadata, so a file whose widths do not divide is refused before any
/// weight is read or uploaded (and never truncated to a narrower head).
fn derived_head_dim(n_embd: usize, n_head: usize) -> Result<usize> {
    if n_embd < n_head || !n_embd.is_multiple_of(n_head) {
        return Err(ForgeError::Malformed { format: "model", what: format!("embedding length {n_embd} does not split into {n_head} attention heads") });
    }
    Ok(n_embd / n_head)
}

impl ModelConfig {
    /// Reads the hyperparameters from GGUF metadata. `has_output` says whether the file has a
    /// separate `output.weight` (else the embedding is tied).
    pub fn from_gguf(meta: &Metadata, has_output: bool) -> Result<ModelConfig> {
        let arch_name = meta.str("general.architecture")?.to_string();
        let arch = arch_of(&arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let u = |k: &str, max: u64| -> Result<usize> { capped(&key(k), meta.u64(&key(k))?, max) };
        let n_embd = u("embedding_length", MAX_DIM)?;
        let n_head = u("attention.head_count", MAX_HEADS)?;
        let n_kv_head = match meta.opt_u64(&key("attention.head_count_kv"))? {
            Some(v) => capped(&key("attention.head_count_kv"), v, MAX_HEADS)?,
            None => n_head,
        };
        let head_dim = match meta.opt_u64(&key("attention.key_length"))? {
            Some(v) => capped(&key("attention.key_length"), v, MAX_DIM)?,
            None => derived_head_dim(n_embd, n_head)?,
        };
        let n_vocab = match meta.opt_u64(&key("vocab_size"))? {
            Some(v) => capped(&key("vocab_size"), v, MAX_VOCAB)?,
            None => capped("tokenizer.ggml.tokens", meta.str_array("tokenizer.ggml.tokens")?.len() as u64, MAX_VOCAB)?,
        };
        let rope_dim = match meta.opt_u64(&key("rope.dimension_count"))? {
            Some(v) => capped(&key("rope.dimension_count"), v, MAX_DIM)?,
            None => head_dim,
        };
        let cfg = ModelConfig {
            arch,
            n_vocab,
            n_embd,
            n_layer: u("block_count", MAX_LAYERS)?,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: u("feed_forward_length", MAX_DIM * 4)?,
            ctx_train: meta.opt_u64(&key("context_length"))?.unwrap_or(2048).clamp(1, 1 << 24) as usize,
            rms_eps: meta.opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_base: meta.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            // llama.cpp: llama-family GGUFs store q/k permuted for adjacent-pair RoPE; qwen2 is NeoX.
            rope_layout: match arch {
                Arch::Llama => RopeLayout::Normal,
                Arch::Qwen2 => RopeLayout::NeoX,
            },
            rope_dim,
            qkv_bias: arch == Arch::Qwen2,
            tied_embeddings: !has_output,
            arch_name,
        };
        cfg.validate()
    }

    /// Reads a Hugging Face `config.json`. Its llama q/k weights are not permuted, so RoPE uses
    /// the NeoX (rotate-half) layout, as in `transformers`.
    pub fn from_hf(config: &serde_json::Value, has_lm_head: bool) -> Result<ModelConfig> {
        let get = |k: &str| config.get(k);
        let model_type = get("model_type").and_then(|v| v.as_str()).ok_or_else(|| ForgeError::MissingMetadata { key: "config.json: model_type".into() })?;
        let arch = arch_of(model_type)?;
        let u = |k: &str, max: u64| -> Result<usize> {
            let v = get(k).and_then(|v| v.as_u64()).ok_or_else(|| ForgeError::MissingMetadata { key: format!("config.json: {k}") })?;
            capped(k, v, max)
        };
        let n_embd = u("hidden_size", MAX_DIM)?;
        let n_head = u("num_attention_heads", MAX_HEADS)?;
        let n_kv_head = if get("num_key_value_heads").is_some_and(|v| !v.is_null()) { u("num_key_value_heads", MAX_HEADS)? } else { n_head };
        let head_dim = if get("head_dim").is_some_and(|v| !v.is_null()) { u("head_dim", MAX_DIM)? } else { derived_head_dim(n_embd, n_head)? };
        let f = |k: &str, d: f64| get(k).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
        let tied = get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(!has_lm_head);
        let cfg = ModelConfig {
            arch,
            arch_name: model_type.to_string(),
            n_vocab: u("vocab_size", MAX_VOCAB)?,
            n_embd,
            n_layer: u("num_hidden_layers", MAX_LAYERS)?,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: u("intermediate_size", MAX_DIM * 4)?,
            ctx_train: get("max_position_embeddings").and_then(|v| v.as_u64()).unwrap_or(2048).clamp(1, 1 << 24) as usize,
            rms_eps: f("rms_norm_eps", 1e-5),
            rope_base: f("rope_theta", 10_000.0),
            rope_layout: RopeLayout::NeoX,
            rope_dim: head_dim,
            qkv_bias: arch == Arch::Qwen2,
            tied_embeddings: tied || !has_lm_head,
        };
        cfg.validate()
    }

    fn validate(self) -> Result<Self> {
        let bad = |what: String| Err(ForgeError::Malformed { format: "model", what });
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!("{} attention heads are not a multiple of {} kv heads", self.n_head, self.n_kv_head));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!("rope dimension {} does not fit head dimension {}", self.rope_dim, self.head_dim));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0 && self.rope_base.is_finite() && self.rope_base > 0.0) {
            return bad(format!("rms eps {} / rope base {} out of range", self.rms_eps, self.rope_base));
        }
        Ok(self)
    }

    /// Width of the q projection and of the attention output.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the k and v projections (and of a KV-cache row).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}
