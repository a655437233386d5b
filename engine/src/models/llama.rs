//! The Llama family as a graph: Llama 2/3 (Touvron et al., 2023), SmolLM2, Mistral, Qwen2.
//!
//! Pre-norm decoder (matches llama.cpp's `llm_build_llama` / `llm_build_qwen2`):
//!
//! ```text
//! x = embed(tokens)
//! for each layer:  x = x + attn(rms_norm(x))      attn: RoPE on q, k; grouped-query; causal
//!                  x = x + mlp(rms_norm(x))       mlp:  down(silu(gate(x)) * up(x))
//! logits = output(rms_norm(x))
//! ```
//!
//! Llama 3.1/3.2 scale RoPE per frequency (`rope_freqs.weight` in GGUF, `rope_scaling
//! {rope_type: "llama3"}` in config.json); `rope_scaling {type: "linear"}` scales positions.
//! Prefill and decode are the same graph with a different token count, and a batch of sequences
//! at different positions is the same graph again: every token carries its position, the cache
//! row its key and value go to, and its sequence's block table (paged attention). The KV cache is
//! not the model's: the caller passes the state params to write keys and values into (`KvParams`).

use super::common::{Builder, Gating, global_weights};
use super::{BatchShape, Family, KvParams, WeightSpec};
use crate::backend::ParamTable;
use crate::error::Result;
use crate::formats::gguf::Metadata;
use crate::graph::{Graph, RopeLayout};
use crate::model::{GgufKeys, HfKeys, ModelConfig, RopeFactors};

pub const FAMILY: Family = Family {
    name: "llama",
    gguf_archs: &["llama", "mistral", "qwen2"],
    hf_model_types: &["llama", "mistral", "qwen2"],
    from_gguf,
    from_hf,
    weights,
    forward,
};

fn from_gguf(meta: &Metadata, arch: &str, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    let mut c = GgufKeys { meta, arch }.common(FAMILY.name, has_tensor("output.weight"))?;
    // llama.cpp: llama-family GGUFs store q/k permuted for adjacent-pair RoPE; qwen2 is NeoX.
    if arch == "qwen2" {
        c.rope_layout = RopeLayout::NeoX;
        c.qkv_bias = true;
    }
    if has_tensor("rope_freqs.weight") {
        c.rope_factors = RopeFactors::Tensor;
    }
    c.validate()
}

/// Hugging Face's llama q/k weights are not permuted, so RoPE uses the NeoX (rotate-half) layout,
/// as in `transformers`.
fn from_hf(config: &serde_json::Value, model_type: &str, has_tensor: &dyn Fn(&str) -> bool) -> Result<ModelConfig> {
    let mut c = HfKeys { config }.common(FAMILY.name, model_type, has_tensor("lm_head.weight"))?;
    c.qkv_bias = model_type == "qwen2";
    c.validate()
}

/// Every weight of a Llama-family model of config `c` (the graph reads exactly these).
fn weights(c: &ModelConfig) -> Vec<WeightSpec> {
    let (e, f) = (c.n_embd, c.n_ff);
    let mut w = global_weights(c);
    w.push(WeightSpec::hf("output_norm.weight".into(), vec![e], "model.norm.weight".into()));
    for l in 0..c.n_layer {
        let mut add = |n: &str, hf: &str, s: Vec<usize>| w.push(WeightSpec::hf(format!("blk.{l}.{n}"), s, format!("model.layers.{l}.{hf}")));
        add("attn_norm.weight", "input_layernorm.weight", vec![e]);
        add("attn_q.weight", "self_attn.q_proj.weight", vec![c.q_dim(), e]);
        add("attn_k.weight", "self_attn.k_proj.weight", vec![c.kv_dim(), e]);
        add("attn_v.weight", "self_attn.v_proj.weight", vec![c.kv_dim(), e]);
        if c.qkv_bias {
            add("attn_q.bias", "self_attn.q_proj.bias", vec![c.q_dim()]);
            add("attn_k.bias", "self_attn.k_proj.bias", vec![c.kv_dim()]);
            add("attn_v.bias", "self_attn.v_proj.bias", vec![c.kv_dim()]);
        }
        add("attn_output.weight", "self_attn.o_proj.weight", vec![e, c.q_dim()]);
        add("ffn_norm.weight", "post_attention_layernorm.weight", vec![e]);
        add("ffn_gate.weight", "mlp.gate_proj.weight", vec![f, e]);
        add("ffn_up.weight", "mlp.up_proj.weight", vec![f, e]);
        add("ffn_down.weight", "mlp.down_proj.weight", vec![e, f]);
    }
    w
}

/// The forward pass (inputs as [`BatchShape`] says).
pub fn forward(c: &ModelConfig, params: &ParamTable, kv: &KvParams, shape: BatchShape) -> Result<Graph> {
    let mut b = Builder::new(c, params, shape);
    let embd = b.w("token_embd.weight")?;
    let mut x = b.g.get_rows(embd, b.tokens)?;
    for l in 0..c.n_layer {
        let h = b.norm(x, &format!("blk.{l}.attn_norm.weight"))?;
        let (q, k, v) = b.qkv(l, h)?;
        let h = b.rope_attend_project(l, q, k, v, kv)?;
        x = b.g.add(x, h)?;
        let h = b.norm(x, &format!("blk.{l}.ffn_norm.weight"))?;
        let h = b.gated_mlp(l, h, Gating::Silu)?;
        x = b.g.add(x, h)?;
    }
    b.finish(x, shape)
}
