//! The canonical description of a decoder-only transformer, whichever family and file it came
//! from.
//!
//! Each family (`models::<family>`) reads GGUF metadata (`{arch}.block_count`, …) or a Hugging Face
//! `config.json` into [`ModelConfig`] with the readers here; the graph builders read nothing else.
//! What varies per layer (RoPE base and scale, sliding window) is in [`LayerConfig`], so a family
//! that alternates local and global layers is described by data, not by code in the backends.

use crate::error::{ForgeError, Result};
use crate::formats::gguf::Metadata;
use crate::graph::RopeLayout;

/// Caps on hyperparameters read from files, so a hostile file fails before it allocates.
pub const MAX_LAYERS: u64 = 1024;
pub const MAX_DIM: u64 = 1 << 17;
pub const MAX_HEADS: u64 = 1024;
pub const MAX_VOCAB: u64 = 1 << 22;
pub const MAX_CTX: u64 = 1 << 24;

/// What one layer's attention does differently from another's.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerConfig {
    pub rope_base: f32,
    /// Linear position interpolation (Chen et al., 2023): 1, or `1 / factor`.
    pub rope_freq_scale: f32,
    /// Sliding-window attention: the query sees only its last `window` keys (itself included).
    pub window: Option<usize>,
}

impl LayerConfig {
    /// `n` layers alike: global attention, one RoPE base.
    pub fn uniform(n: usize, rope_base: f32, rope_freq_scale: f32) -> Vec<LayerConfig> {
        vec![LayerConfig { rope_base, rope_freq_scale, window: None }; n]
    }
}

/// Per-frequency RoPE factors: each pair's frequency is divided by its factor.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeFactors {
    None,
    /// The file carries them as the tensor `rope_freqs.weight` (Llama 3.1/3.2 GGUFs).
    Tensor,
    /// `config.json`'s `rope_scaling {rope_type: "llama3"}`; the factors are computed from it
    /// ([`llama3_rope_factors`]) and given to the graph as `rope_freqs.weight`.
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context: f32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The family that reads and builds it (`models::FAMILIES`): `llama`, `gemma3`, …
    pub family: &'static str,
    /// The architecture name as the file spells it (`llama`, `mistral`, `qwen2`, `gemma3`).
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
    pub rope_layout: RopeLayout,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    pub rope_factors: RopeFactors,
    /// Attention scores are scaled by this (usually `1/√head_dim`).
    pub attn_scale: f32,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// The output projection reuses the token embedding.
    pub tied_embeddings: bool,
    /// One per layer.
    pub layers: Vec<LayerConfig>,
}

/// `v` as a size in `1..=max`, or an error naming `key`.
pub fn capped(key: &str, v: u64, max: u64) -> Result<usize> {
    if v == 0 || v > max {
        return Err(ForgeError::TooLarge { format: "model", what: key.to_string(), value: v, limit: max });
    }
    Ok(v as usize)
}

fn malformed(what: String) -> ForgeError {
    ForgeError::Malformed { format: "model", what }
}

/// A positive, finite float, or an error naming `key`.
pub fn positive(key: &str, v: f32) -> Result<f32> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(malformed(format!("{key} = {v} is out of range (must be a positive number)")))
    }
}

/// The head width where the file gives none: the model width split evenly over the heads.
/// Checked here, with the metadata, so a file whose widths do not divide is refused before any
/// weight is read or uploaded (and never truncated to a narrower head).
fn derived_head_dim(n_embd: usize, n_head: usize) -> Result<usize> {
    if n_embd < n_head || !n_embd.is_multiple_of(n_head) {
        return Err(malformed(format!("embedding length {n_embd} does not split into {n_head} attention heads")));
    }
    Ok(n_embd / n_head)
}

/// GGUF metadata of one architecture: `{arch}.{key}` readers with the caps above.
pub struct GgufKeys<'a> {
    pub meta: &'a Metadata,
    pub arch: &'a str,
}

impl GgufKeys<'_> {
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    pub fn size(&self, k: &str, max: u64) -> Result<usize> {
        capped(&self.key(k), self.meta.u64(&self.key(k))?, max)
    }

    pub fn opt_size(&self, k: &str, max: u64) -> Result<Option<usize>> {
        self.meta.opt_u64(&self.key(k))?.map(|v| capped(&self.key(k), v, max)).transpose()
    }

    pub fn opt_positive(&self, k: &str) -> Result<Option<f32>> {
        self.meta.opt_f32(&self.key(k))?.map(|v| positive(&self.key(k), v)).transpose()
    }

    /// The linear RoPE frequency scale: `1 / rope.scaling.factor` when `rope.scaling.type` is
    /// `linear` (llama.cpp's `rope_freq_scale`), 1 for `none` or no key; other types (YaRN,
    /// LongRoPE) are refused rather than ignored.
    pub fn rope_freq_scale(&self) -> Result<f32> {
        let ty = self.meta.opt_str(&self.key("rope.scaling.type"))?;
        let factor = self.opt_positive("rope.scaling.factor")?;
        match (ty, factor) {
            (None | Some("linear"), Some(f)) => Ok(1.0 / f),
            (None | Some("none") | Some("linear"), None) | (Some("none"), Some(_)) => Ok(1.0),
            (Some(other), _) => Err(ForgeError::UnsupportedModel { what: format!("{} = {other:?} (supported: none, linear)", self.key("rope.scaling.type")) }),
        }
    }

    /// The widths every decoder family has, read once for all of them; the family sets the rest.
    pub fn common(&self, family: &'static str, has_output: bool) -> Result<ModelConfig> {
        let n_embd = self.size("embedding_length", MAX_DIM)?;
        let n_head = self.size("attention.head_count", MAX_HEADS)?;
        let n_kv_head = self.opt_size("attention.head_count_kv", MAX_HEADS)?.unwrap_or(n_head);
        let head_dim = match self.opt_size("attention.key_length", MAX_DIM)? {
            Some(v) => v,
            None => derived_head_dim(n_embd, n_head)?,
        };
        let n_vocab = match self.opt_size("vocab_size", MAX_VOCAB)? {
            Some(v) => v,
            None => capped("tokenizer.ggml.tokens", self.meta.str_array("tokenizer.ggml.tokens")?.len() as u64, MAX_VOCAB)?,
        };
        let n_layer = self.size("block_count", MAX_LAYERS)?;
        let rope_base = self.opt_positive("rope.freq_base")?.unwrap_or(10_000.0);
        Ok(ModelConfig {
            family,
            arch_name: self.arch.to_string(),
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: self.size("feed_forward_length", MAX_DIM * 4)?,
            ctx_train: self.meta.opt_u64(&self.key("context_length"))?.unwrap_or(2048).clamp(1, MAX_CTX) as usize,
            rms_eps: self.meta.opt_f32(&self.key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_layout: RopeLayout::Normal,
            rope_dim: self.opt_size("rope.dimension_count", MAX_DIM)?.unwrap_or(head_dim),
            rope_factors: RopeFactors::None,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            qkv_bias: false,
            tied_embeddings: !has_output,
            layers: LayerConfig::uniform(n_layer, rope_base, self.rope_freq_scale()?),
        })
    }
}

/// A Hugging Face `config.json`: readers that name the key they miss.
pub struct HfKeys<'a> {
    pub config: &'a serde_json::Value,
}

impl HfKeys<'_> {
    pub fn get(&self, k: &str) -> Option<&serde_json::Value> {
        self.config.get(k).filter(|v| !v.is_null())
    }

    pub fn size(&self, k: &str, max: u64) -> Result<usize> {
        let v = self.get(k).and_then(|v| v.as_u64()).ok_or_else(|| ForgeError::MissingMetadata { key: format!("config.json: {k}") })?;
        capped(k, v, max)
    }

    pub fn opt_size(&self, k: &str, max: u64) -> Result<Option<usize>> {
        if self.get(k).is_some() { self.size(k, max).map(Some) } else { Ok(None) }
    }

    pub fn f32_or(&self, k: &str, default: f64) -> Result<f32> {
        match self.get(k) {
            None => Ok(default as f32),
            Some(v) => v.as_f64().map(|x| x as f32).ok_or_else(|| malformed(format!("config.json: {k} is not a number"))),
        }
    }

    /// `rope_scaling`: `linear` gives a frequency scale, `llama3` per-frequency factors; other
    /// types are refused rather than ignored.
    pub fn rope_scaling(&self) -> Result<(f32, RopeFactors)> {
        let Some(rs) = self.get("rope_scaling") else { return Ok((1.0, RopeFactors::None)) };
        let ty = rs.get("rope_type").or_else(|| rs.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        let num = |k: &str| -> Result<f32> {
            let v = rs.get(k).and_then(|v| v.as_f64()).ok_or_else(|| ForgeError::MissingMetadata { key: format!("config.json: rope_scaling.{k}") })?;
            positive(&format!("rope_scaling.{k}"), v as f32)
        };
        match ty {
            "default" => Ok((1.0, RopeFactors::None)),
            "linear" => Ok((1.0 / num("factor")?, RopeFactors::None)),
            "llama3" => Ok((
                1.0,
                RopeFactors::Llama3 {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_context: num("original_max_position_embeddings")?,
                },
            )),
            other => Err(ForgeError::UnsupportedModel { what: format!("config.json: rope_scaling type {other:?} (supported: linear, llama3)") }),
        }
    }

    /// The widths every decoder family has; the family sets the rest.
    pub fn common(&self, family: &'static str, model_type: &str, has_lm_head: bool) -> Result<ModelConfig> {
        let n_embd = self.size("hidden_size", MAX_DIM)?;
        let n_head = self.size("num_attention_heads", MAX_HEADS)?;
        let n_kv_head = self.opt_size("num_key_value_heads", MAX_HEADS)?.unwrap_or(n_head);
        let head_dim = match self.opt_size("head_dim", MAX_DIM)? {
            Some(v) => v,
            None => derived_head_dim(n_embd, n_head)?,
        };
        let tied = self.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(!has_lm_head);
        let n_layer = self.size("num_hidden_layers", MAX_LAYERS)?;
        let rope_base = positive("rope_theta", self.f32_or("rope_theta", 10_000.0)?)?;
        let (freq_scale, rope_factors) = self.rope_scaling()?;
        Ok(ModelConfig {
            family,
            arch_name: model_type.to_string(),
            n_vocab: self.size("vocab_size", MAX_VOCAB)?,
            n_embd,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: self.size("intermediate_size", MAX_DIM * 4)?,
            ctx_train: self.get("max_position_embeddings").and_then(|v| v.as_u64()).unwrap_or(2048).clamp(1, MAX_CTX) as usize,
            rms_eps: self.f32_or("rms_norm_eps", 1e-5)?,
            // Hugging Face's q/k weights are not permuted for adjacent pairs: rotate halves.
            rope_layout: RopeLayout::NeoX,
            rope_dim: head_dim,
            rope_factors,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            qkv_bias: false,
            tied_embeddings: tied || !has_lm_head,
            layers: LayerConfig::uniform(n_layer, rope_base, freq_scale),
        })
    }
}

/// Llama 3.1's RoPE frequency factors (Meta's `apply_scaling` in `llama/model.py`, and
/// `transformers`' `_compute_llama3_parameters`): frequencies whose wavelength is shorter than
/// `original_context / high_freq_factor` keep theirs (factor 1), those longer than
/// `original_context / low_freq_factor` are divided by `factor`, and those between are blended.
/// Returned as divisors of each pair's frequency, `[rope_dim / 2]`, as GGUF's
/// `rope_freqs.weight` stores them.
pub fn llama3_rope_factors(rope_base: f32, rope_dim: usize, factors: &RopeFactors) -> Option<Vec<f32>> {
    let RopeFactors::Llama3 { factor, low_freq_factor, high_freq_factor, original_context } = *factors else { return None };
    let low_wavelen = original_context as f64 / low_freq_factor as f64;
    let high_wavelen = original_context as f64 / high_freq_factor as f64;
    let out = (0..rope_dim / 2)
        .map(|i| {
            let freq = (rope_base as f64).powf(-2.0 * i as f64 / rope_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / factor as f64
            } else {
                let smooth = (original_context as f64 / wavelen - low_freq_factor as f64) / (high_freq_factor as f64 - low_freq_factor as f64);
                (1.0 - smooth) * freq / factor as f64 + smooth * freq
            };
            (freq / scaled) as f32
        })
        .collect();
    Some(out)
}

impl ModelConfig {
    /// Checks that the widths fit each other and every per-layer value is in range; families
    /// call it last.
    pub fn validate(self) -> Result<Self> {
        let bad = |what: String| Err(malformed(what));
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!("{} attention heads are not a multiple of {} kv heads", self.n_head, self.n_kv_head));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!("rope dimension {} does not fit head dimension {}", self.rope_dim, self.head_dim));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad(format!("rms eps {} out of range", self.rms_eps));
        }
        if !(self.attn_scale.is_finite() && self.attn_scale > 0.0) {
            return bad(format!("attention scale {} out of range", self.attn_scale));
        }
        if self.layers.len() != self.n_layer {
            return bad(format!("{} layer descriptions for {} layers", self.layers.len(), self.n_layer));
        }
        for (l, c) in self.layers.iter().enumerate() {
            if !(c.rope_base.is_finite() && c.rope_base > 0.0 && c.rope_freq_scale.is_finite() && c.rope_freq_scale > 0.0) {
                return bad(format!("layer {l}: rope base {} / frequency scale {} out of range", c.rope_base, c.rope_freq_scale));
            }
            if c.window == Some(0) {
                return bad(format!("layer {l}: a sliding window of 0 tokens"));
            }
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
