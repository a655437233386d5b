//! Tiny random-weight models written by the tests themselves, as a GGUF file and as a Hugging
//! Face directory (config.json + model.safetensors + tokenizer.json) holding the same weights.
//!
//! The GGUF side stores matrices in the requested type (quantized by the engine's own
//! quantizer); the safetensors side holds their dequantized values (f32, or the same f16/bf16
//! bits). For llama, GGUF q/k rows are in llama.cpp's permuted order (adjacent-pair RoPE) and the
//! safetensors copy is un-permuted, as `transformers` stores them (rotate-half RoPE).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use forge_engine::DType;
use forge_engine::formats::gguf::MetaValue;
use forge_engine::formats::gguf_write::GgufWriter;
use forge_engine::quant;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyArch {
    Llama,
    Qwen2,
}

pub struct TinySpec {
    pub arch: TinyArch,
    pub dtype: DType,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_layer: usize,
    pub tied: bool,
    pub seed: u64,
}

impl TinySpec {
    /// Sizes that hold whole blocks of every type (rows of 256) and use grouped-query attention.
    pub fn new(arch: TinyArch, dtype: DType) -> Self {
        TinySpec { arch, dtype, n_embd: 256, n_ff: 512, n_head: 4, n_kv_head: 2, n_layer: 2, tied: false, seed: 7 }
    }
}

/// GPT-2's byte → printable-character map, so the vocabulary is the 256 byte-level tokens.
fn byte_tokens() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut by_byte = vec![String::new(); 256];
    for (b, c) in printable.iter().zip(&chars) {
        by_byte[*b as usize] = char::from_u32(*c).expect("valid char").to_string();
    }
    by_byte
}

pub const VOCAB: usize = 256;

pub struct TinyModel {
    pub gguf: PathBuf,
    pub hf_dir: PathBuf,
}

/// Undoes llama.cpp's q/k permutation: GGUF row `h*D + 2i + j` is HF row `h*D + j*D/2 + i`.
fn unpermute(rows: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    let d = rows.len() / cols / n_head;
    let mut out = vec![0.0; rows.len()];
    for h in 0..n_head {
        for i in 0..d / 2 {
            for j in 0..2 {
                let g = h * d + 2 * i + j;
                let hf = h * d + j * d / 2 + i;
                out[hf * cols..(hf + 1) * cols].copy_from_slice(&rows[g * cols..(g + 1) * cols]);
            }
        }
    }
    out
}

impl TinyModel {
    /// Writes both copies under `dir`.
    pub fn write(spec: &TinySpec, dir: &Path) -> TinyModel {
        Self::write_with_meta(spec, dir, Vec::new())
    }

    /// As [`TinyModel::write`], with a chat template in the GGUF's metadata
    /// (`tokenizer.chat_template`), for tests that need `/v1/chat/completions`.
    pub fn write_with_chat_template(spec: &TinySpec, dir: &Path, template: &str) -> TinyModel {
        Self::write_with_meta(spec, dir, vec![("tokenizer.chat_template".into(), MetaValue::Str(template.into()))])
    }

    /// Writes both copies, with `extra` metadata added to the GGUF's.
    pub fn write_with_meta(spec: &TinySpec, dir: &Path, extra: Vec<(String, MetaValue)>) -> TinyModel {
        std::fs::create_dir_all(dir).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
        let (e, f) = (spec.n_embd, spec.n_ff);
        let hd = e / spec.n_head;
        let (qd, kvd) = (spec.n_head * hd, spec.n_kv_head * hd);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![("token_embd.weight".into(), vec![VOCAB, e]), ("output_norm.weight".into(), vec![e])];
        if !spec.tied {
            shapes.push(("output.weight".into(), vec![VOCAB, e]));
        }
        for l in 0..spec.n_layer {
            let p = |n: &str| format!("blk.{l}.{n}");
            shapes.extend([
                (p("attn_norm.weight"), vec![e]),
                (p("attn_q.weight"), vec![qd, e]),
                (p("attn_k.weight"), vec![kvd, e]),
                (p("attn_v.weight"), vec![kvd, e]),
                (p("attn_output.weight"), vec![e, qd]),
                (p("ffn_norm.weight"), vec![e]),
                (p("ffn_gate.weight"), vec![f, e]),
                (p("ffn_up.weight"), vec![f, e]),
                (p("ffn_down.weight"), vec![e, f]),
            ]);
            if spec.arch == TinyArch::Qwen2 {
                shapes.extend([(p("attn_q.bias"), vec![qd]), (p("attn_k.bias"), vec![kvd]), (p("attn_v.bias"), vec![kvd])]);
            }
        }

        let mut w = GgufWriter::new();
        let arch = match spec.arch {
            TinyArch::Llama => "llama",
            TinyArch::Qwen2 => "qwen2",
        };
        let u = |v: usize| MetaValue::U32(v as u32);
        w.metadata("general.architecture", MetaValue::Str(arch.into()));
        w.metadata(format!("{arch}.block_count"), u(spec.n_layer));
        w.metadata(format!("{arch}.embedding_length"), u(e));
        w.metadata(format!("{arch}.feed_forward_length"), u(f));
        w.metadata(format!("{arch}.attention.head_count"), u(spec.n_head));
        w.metadata(format!("{arch}.attention.head_count_kv"), u(spec.n_kv_head));
        w.metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5));
        w.metadata(format!("{arch}.rope.freq_base"), MetaValue::F32(10000.0));
        w.metadata(format!("{arch}.context_length"), u(128));
        let toks = byte_tokens();
        w.metadata("tokenizer.ggml.model", MetaValue::Str("gpt2".into()));
        w.metadata("tokenizer.ggml.pre", MetaValue::Str("gpt2".into()));
        w.metadata("tokenizer.ggml.tokens", MetaValue::Array(toks.iter().map(|t| MetaValue::Str(t.clone())).collect()));
        w.metadata("tokenizer.ggml.token_type", MetaValue::Array(vec![MetaValue::I32(1); VOCAB]));
        w.metadata("tokenizer.ggml.merges", MetaValue::Array(vec![]));
        for (k, v) in extra {
            w.metadata(k, v);
        }

        let mut st: BTreeMap<String, (DType, Vec<usize>, Vec<u8>)> = BTreeMap::new();
        for (name, shape) in &shapes {
            let n: usize = shape.iter().product();
            let is_norm = name.ends_with("norm.weight");
            let values: Vec<f32> = (0..n).map(|_| if is_norm { 1.0 + rng.random_range(-0.2..0.2) } else { rng.random_range(-0.5..0.5) / (shape[shape.len() - 1] as f32).sqrt() * 2.0 }).collect();
            let dtype = if shape.len() == 1 { DType::F32 } else { spec.dtype };
            let cols = shape[shape.len() - 1];
            let rb = dtype.row_bytes(cols).unwrap();
            let mut bytes = vec![0u8; rb * (n / cols)];
            let mut deq = vec![0.0f32; n];
            for (r, (src, dst)) in values.chunks(cols).zip(bytes.chunks_mut(rb)).enumerate() {
                quant::quantize_row(dtype, src, dst);
                quant::dequantize_row(dtype, dst, &mut deq[r * cols..(r + 1) * cols]);
            }
            w.tensor(name.clone(), dtype, shape, bytes.clone()).unwrap();

            let hf_name = hf_name(name);
            let heads = if name.ends_with("attn_q.weight") { Some(spec.n_head) } else if name.ends_with("attn_k.weight") { Some(spec.n_kv_head) } else { None };
            let (st_dtype, st_bytes) = match (dtype, heads, spec.arch) {
                (_, Some(h), TinyArch::Llama) => {
                    let un = unpermute(&deq, h, cols);
                    (DType::F32, bytemuck::cast_slice(&un).to_vec())
                }
                // f16/bf16 bits carry over as they are; quantized types as their f32 values.
                (DType::F16 | DType::BF16 | DType::F32, _, _) => (dtype, bytes),
                _ => (DType::F32, bytemuck::cast_slice(&deq).to_vec()),
            };
            st.insert(hf_name, (st_dtype, shape.clone(), st_bytes));
        }
        let gguf = dir.join("tiny.gguf");
        w.write(&gguf).unwrap();

        let hf_dir = dir.join("hf");
        std::fs::create_dir_all(&hf_dir).unwrap();
        let views: Vec<(String, safetensors::tensor::TensorView)> = st
            .iter()
            .map(|(n, (d, s, b))| {
                let dt = match d {
                    DType::F32 => safetensors::Dtype::F32,
                    DType::F16 => safetensors::Dtype::F16,
                    DType::BF16 => safetensors::Dtype::BF16,
                    other => panic!("safetensors holds no {other}"),
                };
                (n.clone(), safetensors::tensor::TensorView::new(dt, s.clone(), b).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &hf_dir.join("model.safetensors")).unwrap();
        let config = serde_json::json!({
            "model_type": arch, "hidden_size": e, "intermediate_size": f, "num_hidden_layers": spec.n_layer,
            "num_attention_heads": spec.n_head, "num_key_value_heads": spec.n_kv_head, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "vocab_size": VOCAB, "tie_word_embeddings": spec.tied, "max_position_embeddings": 128
        });
        std::fs::write(hf_dir.join("config.json"), config.to_string()).unwrap();
        let vocab: serde_json::Map<String, serde_json::Value> = toks.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
        });
        std::fs::write(hf_dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        TinyModel { gguf, hf_dir }
    }
}

/// A fresh directory under the system temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("forge-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Hugging Face `transformers` name of a canonical (GGUF) llama-family tensor name, written
/// here from `transformers`' `LlamaForCausalLM` rather than taken from the engine, so that the
/// loaders are checked against an independent mapping.
pub fn hf_name(canonical: &str) -> String {
    match canonical {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let (layer, tail) = canonical.strip_prefix("blk.").and_then(|r| r.split_once('.')).expect("a layer tensor");
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
        other => panic!("no Hugging Face name for {other}"),
    };
    format!("model.layers.{layer}.{mapped}")
}
