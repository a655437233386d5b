//! Gemma 3 (Gemma Team, 2025) as a graph, text only; matches llama.cpp's `llm_build_gemma3_iswa`.
//!
//! ```text
//! x = embed(tokens) · √n_embd
//! for each layer l:  h = attn(rms_norm(x));  x = x + rms_norm(h)      (post-attention norm)
//!                    h = mlp(rms_norm(x));   x = x + rms_norm(h)      (post-feed-forward norm)
//!   attn: q, k normalized per head (QK-norm), NeoX RoPE, grouped-query, scale 1/√head_dim;
//!         local layers (all but every 6th) see a sliding window of keys and RoPE base 10 000,
//!         global layers every key and `rope.freq_base` (1e6), linearly scaled if the file says
//!   mlp:  down(gelu_tanh(gate(x)) · up(x))
//! logits = token_embd · rms_norm(x)       (tied)
//! ```
//!
//! GGUF stores the norm weights as used (`1 + w`: the converter adds Gemma's RMSNorm offset);
//! Hugging Face checkpoints store `w`, so their norm weights load with a shift of 1. The residual
//! stream reaches ~1e5 (past f16): every activation here is f32, as every op's are. Its logits
//! are sensitive to attention's precision: with the default f16 KV cache, K/V/Q are rounded to f16
//! as llama.cpp's f16 cache does (with `--kv-type f32`, two of llama.cpp's 336 reference picks
//! differ by more than a near-tie).

use super::common::{Builder, Gating, global_weights};
use super::{BatchShape, Family, HfWeight, KvParams, WeightSpec};
use crate::backend::ParamTable;
use crate::error::{ForgeError, Result};
use crate::formats::gguf::Metadata;
use crate::graph::{Graph, NodeId, RopeLayout};
use crate::model::{GgufKeys, HfKeys, LayerConfig, MAX_CTX, ModelConfig, positive};

pub const FAMILY: Family = Family {
    name: "gemma3",
    gguf_archs: &["gemma3"],
    hf_model_types: &["gemma3_text", "gemma3"],
    from_gguf,
    from_hf,
    weights,
    forward,
};

/// llama.cpp's `set_swa_pattern(6)` / `transformers`' `sliding_window_pattern`: every 6th layer
/// (5, 11, 17, …) is global, the others local.
const SWA_PATTERN: usize = 6;
/// Local layers' RoPE base (llama.cpp's `rope_freq_base_train_swa`, HF `rope_local_base_freq`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;

fn is_global(l: usize) -> bool {
    l % SWA_PATTERN == SWA_PATTERN - 1
}

/// Layers from the window, the two RoPE bases and the global layers' frequency scale; `global`
/// says which layers see every key.
fn layers(n_layer: usize, window: Option<usize>, global_base: f32, global_freq_scale: f32, local_base: f32, global: &dyn Fn(usize) -> bool) -> Vec<LayerConfig> {
    (0..n_layer)
        .map(|l| if global(l) { LayerConfig { rope_base: global_base, rope_freq_scale: global_freq_scale, window: None } } else { LayerConfig { rope_base: local_base, rope_freq_scale: 1.0, window } })
        .collect()
}

/// 1/√head_dim, except Gemma 3 27B (62 layers): 1/√(n_embd / n_head), as llama.cpp keys it.
fn attn_scale(c: &ModelConfig) -> f32 {
    if c.n_layer == 62 { 1.0 / ((c.n_embd / c.n_head) as f32).sqrt() } else { 1.0 / (c.head_dim as f32).sqrt() }
}

fn from_gguf(meta: &Metadata, arch: &str, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    let keys = GgufKeys { meta, arch };
    let mut c = keys.common(FAMILY.name, has_tensor("output.weight"))?;
    // A missing window means no local attention (newer llama.cpp); a present one must fit.
    let window = keys.opt_size("attention.sliding_window", MAX_CTX)?;
    let global_base = keys.opt_positive("rope.freq_base")?.unwrap_or(1_000_000.0);
    c.layers = layers(c.n_layer, window, global_base, keys.rope_freq_scale()?, LOCAL_ROPE_BASE, &is_global);
    c.rope_layout = RopeLayout::NeoX;
    c.rms_eps = meta.opt_f32(&keys.key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6);
    c.attn_scale = attn_scale(&c);
    c.validate()
}

fn from_hf(config: &serde_json::Value, model_type: &str, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    // A multimodal `gemma3` config keeps the language model's settings in `text_config`.
    let text = match model_type {
        "gemma3" => config.get("text_config").ok_or_else(|| ForgeError::MissingMetadata { key: "config.json: text_config".into() })?,
        _ => config,
    };
    let keys = HfKeys { config: text };
    let mut c = keys.common(FAMILY.name, model_type, has_tensor("lm_head.weight"))?;
    let window = keys.opt_size("sliding_window", MAX_CTX)?;
    let global_base = positive("rope_theta", keys.f32_or("rope_theta", 1_000_000.0)?)?;
    let local_base = positive("rope_local_base_freq", keys.f32_or("rope_local_base_freq", LOCAL_ROPE_BASE as f64)?)?;
    let global_scale = c.layers.first().map_or(1.0, |l| l.rope_freq_scale);
    // `layer_types` names each layer; older configs give the pattern instead.
    let layer_types: Option<Vec<bool>> = keys.get("layer_types").and_then(|v| v.as_array()).map(|a| a.iter().map(|t| t.as_str() == Some("full_attention")).collect());
    let pattern = keys.opt_size("sliding_window_pattern", 1024)?.unwrap_or(SWA_PATTERN);
    let global = |l: usize| match &layer_types {
        Some(t) => t.get(l).copied().unwrap_or(false),
        None => l % pattern == pattern - 1,
    };
    if let Some(t) = &layer_types
        && t.len() != c.n_layer
    {
        return Err(ForgeError::Malformed { format: "model", what: format!("config.json: layer_types has {} entries for {} layers", t.len(), c.n_layer) });
    }
    c.layers = layers(c.n_layer, window, global_base, global_scale, local_base, &global);
    c.rms_eps = keys.f32_or("rms_norm_eps", 1e-6)?;
    c.attn_scale = match keys.get("query_pre_attn_scalar") {
        Some(v) => {
            let s = v.as_f64().ok_or_else(|| ForgeError::Malformed { format: "model", what: "config.json: query_pre_attn_scalar is not a number".into() })?;
            1.0 / positive("query_pre_attn_scalar", s as f32)?.sqrt()
        }
        None => attn_scale(&c),
    };
    c.validate()
}

fn weights(c: &ModelConfig) -> Vec<WeightSpec> {
    let (e, f, d) = (c.n_embd, c.n_ff, c.head_dim);
    let mut w = global_weights(c);
    // Hugging Face's Gemma RMSNorm multiplies by (1 + w); GGUF stores that sum.
    let norm = |name: String, shape: Vec<usize>, hf: String| WeightSpec { name, shape, hf: HfWeight::Tensor { name: hf, shift: 1.0 } };
    w.push(norm("output_norm.weight".into(), vec![e], "model.norm.weight".into()));
    for l in 0..c.n_layer {
        let at = |n: &str| format!("blk.{l}.{n}");
        let hf = |n: &str| format!("model.layers.{l}.{n}");
        w.push(norm(at("attn_norm.weight"), vec![e], hf("input_layernorm.weight")));
        w.push(WeightSpec::hf(at("attn_q.weight"), vec![c.q_dim(), e], hf("self_attn.q_proj.weight")));
        w.push(WeightSpec::hf(at("attn_k.weight"), vec![c.kv_dim(), e], hf("self_attn.k_proj.weight")));
        w.push(WeightSpec::hf(at("attn_v.weight"), vec![c.kv_dim(), e], hf("self_attn.v_proj.weight")));
        w.push(norm(at("attn_q_norm.weight"), vec![d], hf("self_attn.q_norm.weight")));
        w.push(norm(at("attn_k_norm.weight"), vec![d], hf("self_attn.k_norm.weight")));
        w.push(WeightSpec::hf(at("attn_output.weight"), vec![e, c.q_dim()], hf("self_attn.o_proj.weight")));
        w.push(norm(at("post_attention_norm.weight"), vec![e], hf("post_attention_layernorm.weight")));
        w.push(norm(at("ffn_norm.weight"), vec![e], hf("pre_feedforward_layernorm.weight")));
        w.push(WeightSpec::hf(at("ffn_gate.weight"), vec![f, e], hf("mlp.gate_proj.weight")));
        w.push(WeightSpec::hf(at("ffn_up.weight"), vec![f, e], hf("mlp.up_proj.weight")));
        w.push(WeightSpec::hf(at("ffn_down.weight"), vec![e, f], hf("mlp.down_proj.weight")));
        w.push(norm(at("post_ffw_norm.weight"), vec![e], hf("post_feedforward_layernorm.weight")));
    }
    w
}

/// Attention with QK-norm: a weight of one head's width normalizes each head on its own.
fn attn(b: &mut Builder, l: usize, x: NodeId, kv: &KvParams) -> Result<NodeId> {
    let (q, k, v) = b.qkv(l, x)?;
    let q = b.norm(q, &format!("blk.{l}.attn_q_norm.weight"))?;
    let k = b.norm(k, &format!("blk.{l}.attn_k_norm.weight"))?;
    b.rope_attend_project(l, q, k, v, kv)
}

pub fn forward(c: &ModelConfig, params: &ParamTable, kv: &KvParams, shape: BatchShape) -> Result<Graph> {
    let mut b = Builder::new(c, params, shape);
    let embd = b.w("token_embd.weight")?;
    let x = b.g.get_rows(embd, b.tokens)?;
    // f32 √n_embd, as llama.cpp (`sqrtf(n_embd)`).
    let mut x = b.g.scale(x, (c.n_embd as f32).sqrt())?;
    for l in 0..c.n_layer {
        let h = b.norm(x, &format!("blk.{l}.attn_norm.weight"))?;
        let h = attn(&mut b, l, h, kv)?;
        let h = b.norm(h, &format!("blk.{l}.post_attention_norm.weight"))?;
        x = b.g.add(x, h)?;
        let h = b.norm(x, &format!("blk.{l}.ffn_norm.weight"))?;
        let h = b.gated_mlp(l, h, Gating::GeluTanh)?;
        let h = b.norm(h, &format!("blk.{l}.post_ffw_norm.weight"))?;
        x = b.g.add(x, h)?;
    }
    b.finish(x, shape)
}
