//! A backend's kernels checked against an independent reference: a tiny random one-layer Llama,
//! built with its matrices in each weight format, is run through a prefill and a decode step on
//! the backend, and its logits compared with a plain f64 forward pass of the same weights
//! ([`plain_forward`]); the CPU backend is held to it like every other. Used by `forge doctor`
//! and by tests; also the source of a tiny model for tests that need a whole [`Model`] without a
//! file.

use std::collections::BTreeMap;

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::Result;
use crate::formats::gguf::{MetaValue, Metadata};
use crate::graph::RopeLayout;
use crate::model::{LayerConfig, Model, ModelConfig, ModelSource, RopeFactors};
use crate::models;
use crate::session::Readout;
use crate::session::{Forward, Session};
use crate::tensor::HostTensor;
use crate::tokenizer::Tokenizer;

pub use super::plain_forward::{plain_forward, plain_forward_with_freqs};

/// A one-layer Llama with grouped-query attention; widths are multiples of 256 so that every
/// block format (K-quants included) can store its matrices.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        family: "llama",
        arch_name: "llama".into(),
        n_vocab: 259,
        n_embd: 256,
        n_layer: 1,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 64,
        n_ff: 512,
        ctx_train: 64,
        rms_eps: 1e-5,
        rope_layout: RopeLayout::Normal,
        rope_dim: 64,
        rope_factors: RopeFactors::None,
        attn_scale: 1.0 / 8.0,
        qkv_bias: false,
        tied_embeddings: true,
        layers: LayerConfig::uniform(1, 10000.0, 1.0),
    }
}

/// Deterministic values in [-scale, scale) (splitmix64), so every run checks the same model.
fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The weights of `c` with random values, matrices stored as `dtype`, vectors as f32.
pub fn tiny_weights(c: &ModelConfig, dtype: DType, seed: u64) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    for (i, (name, shape)) in models::weight_shapes(c)?.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let t = if shape.len() == 1 {
            let v: Vec<f32> = random(seed + i as u64, n, 0.1).iter().map(|x| 1.0 + x).collect();
            HostTensor::from_f32(shape, &v)?
        } else {
            let v = random(seed + i as u64, n, 0.5 / (shape[1] as f32).sqrt() * 3.0);
            let row = dtype.row_bytes(shape[1])?;
            let mut bytes = vec![0u8; row * shape[0]];
            for (src, dst) in v.chunks(shape[1]).zip(bytes.chunks_mut(row)) {
                crate::quant::quantize_row(dtype, src, dst);
            }
            HostTensor::from_bytes(dtype, shape, bytes)?
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// A byte-sized vocabulary (three control tokens and 256 others) with no merges.
fn tiny_tokenizer(n_vocab: usize) -> Result<Tokenizer> {
    let strs = |v: Vec<String>| MetaValue::Array(v.into_iter().map(MetaValue::Str).collect());
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend((0..n_vocab - 3).map(|i| char::from_u32(0x100 + i as u32).expect("valid char").to_string()));
    let mut m = Metadata::new();
    m.insert("tokenizer.ggml.model", MetaValue::Str("gpt2".into()));
    m.insert("tokenizer.ggml.pre", MetaValue::Str("gpt2".into()));
    m.insert("tokenizer.ggml.token_type", MetaValue::Array((0..n_vocab).map(|i| MetaValue::I32(if i < 3 { 3 } else { 1 })).collect()));
    m.insert("tokenizer.ggml.tokens", strs(tokens));
    m.insert("tokenizer.ggml.merges", strs(vec![]));
    m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(1));
    m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    Tokenizer::from_gguf(&m)
}

/// The tiny model with random weights in `dtype`.
pub fn tiny_model(dtype: DType, seed: u64) -> Result<Model> {
    let config = tiny_config();
    let weights = tiny_weights(&config, dtype, seed)?;
    let tokenizer = tiny_tokenizer(config.n_vocab)?;
    Ok(Model { config, weights, tokenizer, source: ModelSource { path: "tiny".into(), format: "synthetic", name: Some(format!("tiny-{dtype}")) }, sampling: Default::default() })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// Weight formats checked, in order.
pub const CHECKED_TYPES: [DType; 10] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4K, DType::Q5K, DType::Q6K];

/// Prefill of 5 tokens (all logits) then one decode step (last logits), flattened.
pub(super) fn run(model: &Model, backend: Box<dyn Backend>) -> Result<Vec<f32>> {
    let mut s = Session::new(model, backend, 16, &mut |_, _| {})?;
    let mut out = Vec::new();
    for (tokens, readout) in [(&TOKENS[..5], Readout::LogitsAll), (&TOKENS[5..], Readout::LogitsLast)] {
        if let Forward::Logits { values, .. } = s.forward(tokens, readout)? {
            out.extend(values);
        }
    }
    Ok(out)
}

/// Largest |a - b| relative to the largest |reference| (at least 1).
pub fn relative_error(reference: &[f32], got: &[f32]) -> f32 {
    let scale = reference.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    reference.iter().zip(got).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// The largest relative error from the f64 reference accepted for weights stored as `dtype`.
/// Float weights: f32 kernels only round and reorder sums (~1e-6 seen). Block formats: the CPU
/// backend, like llama.cpp, quantizes activations to 8 bits before the dot product
/// (`quant::quantize_act`): ~1-2e-2 on this model; a backend that dequantizes weights and
/// multiplies in f32 is closer. So 5e-2. A wrong kernel is off by O(1).
pub fn tolerance(dtype: DType) -> f32 {
    if dtype.is_quantized() { 5e-2 } else { 1e-3 }
}

/// The tokens [`run`] feeds: a prefill of 5, then one decode step.
pub(super) const TOKENS: [u32; 6] = [1, 7, 42, 200, 258, 3];

/// Checks the backends `open` makes against [`plain_forward`], one line per weight format.
pub fn compare_with_reference(open: &mut dyn FnMut() -> Result<Box<dyn Backend>>) -> Vec<CheckResult> {
    CHECKED_TYPES
        .iter()
        .map(|&dtype| {
            let name = format!("tiny llama, {dtype} weights");
            let outcome = (|| -> Result<CheckResult> {
                let backend = open()?;
                if !backend.supports(&crate::graph::Op::MatMul, dtype) || !backend.supports(&crate::graph::Op::GetRows, dtype) {
                    return Ok(CheckResult { name: name.clone(), verdict: Verdict::Skip, detail: format!("{} does not run {dtype} weights", backend.name()) });
                }
                let model = tiny_model(dtype, 7)?;
                let reference = plain_forward(&model, &TOKENS);
                let got = run(&model, backend)?;
                let err = relative_error(&reference, &got);
                let tolerance = tolerance(dtype);
                let finite = got.iter().all(|x| x.is_finite());
                let verdict = if finite && got.len() == reference.len() && err <= tolerance { Verdict::Pass } else { Verdict::Fail };
                Ok(CheckResult { name: name.clone(), verdict, detail: format!("{} logits, max relative error {err:.1e} from the f64 reference (tolerance {tolerance:.0e})", got.len()) })
            })();
            outcome.unwrap_or_else(|e| CheckResult { name: name.clone(), verdict: Verdict::Fail, detail: e.to_string() })
        })
        .collect()
}
