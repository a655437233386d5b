//! A Hugging Face directory (config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json) written from the Gemma 3 GGUF at test time, so that the safetensors
//! path of the gemma3 family runs on real weights without half a gigabyte committed.
//!
//! Everything here is written from `transformers`' and `tokenizers`' conventions, not from the
//! engine's own tables, so that loading the directory is an independent check of them:
//! - weights under `Gemma3ForCausalLM`'s names ([`hf_name`]), dequantized; matrices in the type
//!   asked for (BF16 halves the embedding's 671 MB), norm vectors in f32 and minus 1, since
//!   `Gemma3RMSNorm` computes `x̂ · (1 + w)` where GGUF stores the sum; Q/K rows as they are
//!   (Gemma's converter does not permute them, unlike llama's);
//! - `config.json` of `Gemma3TextConfig` from the GGUF metadata (`layer_types` by transformers'
//!   rule: every 6th layer full attention);
//! - `tokenizer.json` as transformers' `GemmaConverter` builds it from the SentencePiece model
//!   (shared/design/gemma3.md §4): BPE over the whole vocabulary with merges derived from the
//!   scores ([`spm_merges`]), byte fallback, `' '` → `'▁'`, `<bos>` prepended, control tokens as
//!   special added tokens and user-defined ones as plain added tokens.

use std::collections::HashMap;
use std::path::Path;

use forge_engine::formats::gguf::Metadata;
use forge_engine::{DType, Model};
use serde_json::{Value, json};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// `transformers`' `Gemma3ForCausalLM` name of a canonical (GGUF) gemma3 tensor name, written
/// here from `modeling_gemma3.py` (`Gemma3DecoderLayer`, `Gemma3Attention`, `Gemma3MLP`).
pub fn hf_name(canonical: &str) -> String {
    match canonical {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        _ => {}
    }
    let (layer, tail) = canonical.strip_prefix("blk.").and_then(|r| r.split_once('.')).unwrap_or_else(|| panic!("no Hugging Face name for {canonical}"));
    let mapped = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "post_attention_norm.weight" => "post_attention_layernorm.weight",
        "ffn_norm.weight" => "pre_feedforward_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "post_ffw_norm.weight" => "post_feedforward_layernorm.weight",
        other => panic!("no Hugging Face name for blk.{layer}.{other}"),
    };
    format!("model.layers.{layer}.{mapped}")
}

/// Writes the directory for `model` (loaded from the GGUF whose metadata is `meta`) into `dir`,
/// matrices as `matrices` (F32 or BF16).
pub fn write_gemma3_dir(model: &Model, meta: &Metadata, dir: &Path, matrices: DType) {
    std::fs::create_dir_all(dir).unwrap();
    write_weights(model, &dir.join("model.safetensors"), matrices);
    let write_json = |name: &str, v: &Value| std::fs::write(dir.join(name), serde_json::to_vec(v).unwrap()).unwrap();
    write_json("config.json", &config_json(meta));
    let tok = TokenizerParts::from_gguf(meta);
    write_json("tokenizer.json", &tok.tokenizer_json());
    write_json("tokenizer_config.json", &tok.tokenizer_config_json());
}

fn write_weights(model: &Model, path: &Path, matrices: DType) {
    let dt = match matrices {
        DType::F32 => safetensors::Dtype::F32,
        DType::BF16 => safetensors::Dtype::BF16,
        other => panic!("matrices are written as F32 or BF16, not {other}"),
    };
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &model.weights {
        let values = t.to_f32_vec();
        let (dtype, bytes) = if name.ends_with("norm.weight") {
            let v: Vec<f32> = values.iter().map(|x| x - 1.0).collect();
            (safetensors::Dtype::F32, bytemuck::cast_slice(&v).to_vec())
        } else if matrices == DType::BF16 {
            let v: Vec<half::bf16> = values.iter().map(|&x| half::bf16::from_f32(x)).collect();
            (dt, bytemuck::cast_slice(&v).to_vec())
        } else {
            (dt, bytemuck::cast_slice(&values).to_vec())
        };
        tensors.push((hf_name(name), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// `Gemma3TextConfig` from the GGUF's `gemma3.*` keys.
fn config_json(meta: &Metadata) -> Value {
    let u = |k: &str| meta.u64(&format!("gemma3.{k}")).unwrap_or_else(|e| panic!("{k}: {e}"));
    let f = |k: &str| meta.f32(&format!("gemma3.{k}")).unwrap_or_else(|e| panic!("{k}: {e}")) as f64;
    let n_layer = u("block_count") as usize;
    // transformers: `"sliding_attention" if bool((i + 1) % sliding_window_pattern) else "full_attention"`, pattern 6.
    let layer_types: Vec<&str> = (0..n_layer).map(|i| if (i + 1) % 6 == 0 { "full_attention" } else { "sliding_attention" }).collect();
    let id = |k: &str| meta.u64(&format!("tokenizer.ggml.{k}")).unwrap_or_else(|e| panic!("{k}: {e}"));
    json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": u("embedding_length"),
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": n_layer,
        "num_attention_heads": u("attention.head_count"),
        "num_key_value_heads": u("attention.head_count_kv"),
        "head_dim": u("attention.key_length"),
        "sliding_window": u("attention.sliding_window"),
        "layer_types": layer_types,
        "rope_theta": f("rope.freq_base"),
        "rope_local_base_freq": 10000.0,
        "rope_scaling": null,
        "query_pre_attn_scalar": u("attention.key_length"),
        "rms_norm_eps": f("attention.layer_norm_rms_epsilon"),
        "max_position_embeddings": u("context_length"),
        "vocab_size": meta.str_array("tokenizer.ggml.tokens").unwrap().len(),
        "tie_word_embeddings": true,
        "hidden_activation": "gelu_pytorch_tanh",
        "attention_bias": false,
        "final_logit_softcapping": null,
        "attn_logit_softcapping": null,
        "bos_token_id": id("bos_token_id"),
        "eos_token_id": id("eos_token_id"),
        "pad_token_id": id("padding_token_id"),
        "torch_dtype": "bfloat16",
    })
}

/// The GGUF's SentencePiece vocabulary.
struct TokenizerParts {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    bos: usize,
    eos: usize,
    pad: usize,
    unk: usize,
}

impl TokenizerParts {
    fn from_gguf(meta: &Metadata) -> TokenizerParts {
        let tokens: Vec<String> = meta.str_array("tokenizer.ggml.tokens").unwrap().into_iter().map(str::to_string).collect();
        let scores = meta.opt_f32_array("tokenizer.ggml.scores").unwrap().expect("scores");
        let types = meta.opt_i32_array("tokenizer.ggml.token_type").unwrap().expect("token types");
        assert_eq!((scores.len(), types.len()), (tokens.len(), tokens.len()));
        let id = |k: &str| meta.u64(&format!("tokenizer.ggml.{k}")).unwrap() as usize;
        TokenizerParts { tokens, scores, types, bos: id("bos_token_id"), eos: id("eos_token_id"), pad: id("padding_token_id"), unk: id("unknown_token_id") }
    }

    fn tokenizer_json(&self) -> Value {
        let mut vocab = serde_json::Map::new();
        for (id, t) in self.tokens.iter().enumerate() {
            assert!(vocab.insert(t.clone(), json!(id)).is_none(), "token {t:?} appears twice");
        }
        let merges: Vec<Value> = spm_merges(&self.tokens, &self.scores, &self.types).into_iter().map(|(a, b)| json!([a, b])).collect();
        // Control and unknown tokens are special; user-defined ones (runs of newlines and spaces,
        // HTML tags) are matched in raw text either way, as by llama.cpp.
        let added: Vec<Value> = self
            .types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(**t, UNKNOWN | CONTROL | USER_DEFINED))
            .map(|(id, &t)| {
                json!({"id": id, "content": self.tokens[id], "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": t != USER_DEFINED})
            })
            .collect();
        let bos = &self.tokens[self.bos];
        let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let special = json!({"SpecialToken": {"id": bos, "type_id": 0}});
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
            "pre_tokenizer": null,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [special, seq("A", 0)],
                "pair": [special, seq("A", 0), special, seq("B", 1)],
                "special_tokens": {bos.clone(): {"id": bos, "ids": [self.bos], "tokens": [bos]}},
            },
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ]},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": self.tokens[self.unk], "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            },
        })
    }

    fn tokenizer_config_json(&self) -> Value {
        json!({
            "add_bos_token": true,
            "add_eos_token": false,
            "bos_token": self.tokens[self.bos],
            "eos_token": self.tokens[self.eos],
            "pad_token": self.tokens[self.pad],
            "unk_token": self.tokens[self.unk],
            "tokenizer_class": "GemmaTokenizer",
        })
    }
}

/// BPE merges from SentencePiece scores, as `transformers`' `generate_merges`: every split of
/// every normal token into two vocabulary entries, with that token's score; each token's splits
/// by the ids of their halves, then all by (score, left length, right length) descending —
/// lengths in characters — keeping that order among equals (Python's stable `reverse=True`).
pub fn spm_merges(tokens: &[String], scores: &[f32], types: &[i32]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(usize, usize, f32, usize, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate().filter(|(i, _)| types[*i] == NORMAL) {
        let score = scores[i];
        let mut local: Vec<(usize, usize, f32, usize, usize)> = t
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = t.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, score, l.chars().count(), r.chars().count()))
            })
            .collect();
        local.sort_by_key(|m| (m.0, m.1));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges.into_iter().map(|(l, r, ..)| (tokens[l].clone(), tokens[r].clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_transformers_order() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc", "<x>"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0, -1000.0];
        let types = [NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, CONTROL];
        let m = spm_merges(&tokens, &scores, &types);
        let pairs: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        // bc (-1), ab (-2), then abc's splits (-3): "ab"+"c" (left 2 chars) before "a"+"bc".
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("ab", "c"), ("a", "bc")]);
    }
}
