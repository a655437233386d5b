//! One model, two files: a tiny random Llama (and Qwen2) written as GGUF and as a Hugging Face
//! safetensors directory must give the same logits through both loaders, for every weight type.

use forge_engine::backend::cpu::CpuBackend;
use forge_engine::session::Readout;
use forge_engine::session::Forward;
use forge_engine::{DType, Model, Session};
use forge_tests::tiny::{TinyArch, TinyModel, TinySpec, temp_dir};

fn logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, Box::new(CpuBackend::new()), 32, &mut |_, _| {}).expect("session");
    match s.forward(tokens, Readout::LogitsAll).expect("forward") {
        Forward::Logits { values, .. } => values,
        other => panic!("expected logits, got {other:?}"),
    }
}

/// Largest difference relative to the largest logit.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

fn check(arch: TinyArch, dtype: DType, tied: bool) {
    let dir = temp_dir(&format!("loaders-{arch:?}-{}-{tied}", dtype.name()));
    let spec = TinySpec { tied, ..TinySpec::new(arch, dtype) };
    let tiny = TinyModel::write(&spec, &dir);
    let from_gguf = Model::load(&tiny.gguf).expect("gguf loads");
    let from_hf = Model::load(&tiny.hf_dir).expect("safetensors dir loads");
    assert_eq!(from_gguf.config.n_layer, from_hf.config.n_layer);
    let tokens = [1u32, 200, 35, 7, 99, 12, 255];
    let (a, b) = (logits(&from_gguf, &tokens), logits(&from_hf, &tokens));
    assert_eq!(a.len(), tokens.len() * forge_tests::tiny::VOCAB);
    // Float weights run the same arithmetic in a different RoPE pairing: rounding only. Quantized
    // GGUF weights meet 8-bit activations (llama.cpp's scheme) while the safetensors copy holds
    // their f32 values, so the two differ by the activation quantization error (~1/127 per dot
    // product relative, compounded over 2 layers): 3% of the logit range is a generous bound
    // that a wrong layout or permutation (errors of order 100%) cannot meet.
    let tol = if dtype.is_quantized() { 0.03 } else { 1e-4 };
    let d = rel_diff(&a, &b);
    assert!(d <= tol, "{arch:?} {dtype} tied={tied}: gguf vs safetensors logits differ by {d} (relative), tolerance {tol}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gguf_and_safetensors_give_the_same_logits_for_every_dtype() {
    for dtype in DType::WEIGHT_TYPES {
        check(TinyArch::Llama, dtype, false);
    }
}

#[test]
fn qwen2_with_biases_and_tied_llama_load_alike() {
    check(TinyArch::Qwen2, DType::F32, false);
    check(TinyArch::Qwen2, DType::Q8_0, false);
    check(TinyArch::Llama, DType::F16, true);
}

#[test]
fn a_permutation_mistake_would_be_caught() {
    // The test above is only meaningful if the logits depend on the weights' layout: a model
    // whose safetensors q/k rows are left in GGUF order must NOT match.
    let dir = temp_dir("loaders-negative");
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::F32), &dir);
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tiny.hf_dir.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "qwen2".into(); // qwen2 would expect biases: fails to load, which is also a catch
    std::fs::write(tiny.hf_dir.join("config.json"), cfg.to_string()).unwrap();
    assert!(Model::load(&tiny.hf_dir).is_err(), "a qwen2 config without q/k/v biases must be refused");
    let from_gguf = Model::load(&tiny.gguf).unwrap();
    let mut swapped = Model::load(&tiny.gguf).unwrap();
    // Use the NeoX pairing on GGUF's permuted rows: the logits must move.
    swapped.config.rope_layout = forge_engine::graph::RopeLayout::NeoX;
    let tokens = [3u32, 1, 4, 1, 5];
    let d = rel_diff(&logits(&from_gguf, &tokens), &logits(&swapped, &tokens));
    assert!(d > 0.05, "a wrong RoPE layout changed logits by only {d}");
    let _ = std::fs::remove_dir_all(&dir);
}
