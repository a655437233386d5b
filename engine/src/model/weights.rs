//! The tensors a model of a given configuration is made of, under their canonical (GGUF) names:
//! what a loader must find in a file and what a graph builder may read. Part of the model's
//! description, so loading a model needs nothing from the graph builders (`models`).

use super::ModelConfig;

/// Every weight of a Llama-family model of config `c` (the graph reads exactly these), with its
/// row-major shape.
pub fn weight_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (e, f) = (c.n_embd, c.n_ff);
    let mut w = vec![("token_embd.weight".to_string(), vec![c.n_vocab, e]), ("output_norm.weight".to_string(), vec![e])];
    if !c.tied_embeddings {
        w.push(("output.weight".to_string(), vec![c.n_vocab, e]));
    }
    for l in 0..c.n_layer {
        let mut add = |n: &str, s: Vec<usize>| w.push((format!("blk.{l}.{n}"), s));
        add("attn_norm.weight", vec![e]);
        add("attn_q.weight", vec![c.q_dim(), e]);
        add("attn_k.weight", vec![c.kv_dim(), e]);
        add("attn_v.weight", vec![c.kv_dim(), e]);
        if c.qkv_bias {
            add("attn_q.bias", vec![c.q_dim()]);
            add("attn_k.bias", vec![c.kv_dim()]);
            add("attn_v.bias", vec![c.kv_dim()]);
        }
        add("attn_output.weight", vec![e, c.q_dim()]);
        add("ffn_norm.weight", vec![e]);
        add("ffn_gate.weight", vec![f, e]);
        add("ffn_up.weight", vec![f, e]);
        add("ffn_down.weight", vec![e, f]);
    }
    w
}

