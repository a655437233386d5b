//! Canonical (GGUF) tensor names ↔ Hugging Face `transformers` names, for llama-family models.

/// The Hugging Face name of a canonical tensor name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`).
pub fn hf_name(canonical: &str) -> String {
    match canonical {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let Some(rest) = canonical.strip_prefix("blk.") else { return canonical.to_string() };
    let Some((layer, tail)) = rest.split_once('.') else { return canonical.to_string() };
    let mapped = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return canonical.to_string(),
    };
    format!("model.layers.{layer}.{mapped}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_layer_names() {
        assert_eq!(super::hf_name("blk.12.ffn_down.weight"), "model.layers.12.mlp.down_proj.weight");
        assert_eq!(super::hf_name("token_embd.weight"), "model.embed_tokens.weight");
        assert_eq!(super::hf_name("blk.0.attn_k.bias"), "model.layers.0.self_attn.k_proj.bias");
    }
}
