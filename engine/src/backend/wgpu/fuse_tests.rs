//! Fusion changes how many dispatches a step takes, never a bit of its results: a tiny model run
//! with fusion on and off must give the same logits, and decode must take at most 8 dispatches
//! per layer where every fusion applies.

use crate::backend::wgpu::WgpuBackend;
use crate::devices::check::{tiny_config, tiny_model, tiny_weights};
use crate::dtype::DType;
use crate::graph::RopeLayout;
use crate::model::{LayerConfig, ModelConfig};
use crate::session::{Forward, KvType, Readout, Session};

fn backend(fuse: bool, gpu_geometry: bool) -> Option<WgpuBackend> {
    match WgpuBackend::new() {
        Ok(mut b) => {
            b.fuse = fuse;
            if gpu_geometry {
                // The matvec GPUs run (`matvec`, 16 invocations per row), on whatever adapter this is.
                b.matvec = crate::backend::wgpu::kernels::Matvec::for_device(wgpu::DeviceType::DiscreteGpu);
            }
            // Every activation buffer starts as NaN: an element a fused kernel fails to write shows.
            b.poison_activations = true;
            Some(b)
        }
        Err(e) if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
        Err(e) => {
            eprintln!("skipping: no wgpu device ({e})");
            None
        }
    }
}

/// Logits of a 5-token prefill and of 3 single-token decode steps, and the dispatches of a decode
/// step.
fn run(config: &ModelConfig, dtype: DType, kv: KvType, b: WgpuBackend) -> (Vec<Vec<f32>>, usize) {
    let mut model = tiny_model(dtype, 3).unwrap();
    model.weights = tiny_weights(config, dtype, 3).unwrap();
    model.config = config.clone();
    let mut s = Session::with_kv_type(&model, Box::new(b), 64, kv, &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    let mut take = |f: Forward| match f {
        Forward::Logits { values, .. } => out.push(values),
        Forward::Token(_) => unreachable!("logits were asked for"),
    };
    take(s.forward(&[5, 77, 130, 9, 250], Readout::LogitsAll).unwrap());
    for t in [17, 200, 3] {
        take(s.forward(&[t], Readout::LogitsLast).unwrap());
    }
    let launches = s.backend().last_launches().expect("wgpu counts its launches");
    (out, launches)
}

#[test]
fn fusion_keeps_every_bit_and_takes_at_most_8_dispatches_per_layer() {
    let mut llama = tiny_config();
    llama.n_layer = 3;
    llama.layers = LayerConfig::uniform(3, 10000.0, 1.0);
    // Qwen2-like: biases on q, k and v (so no residual... the bias adds stay), NeoX RoPE.
    let mut qwen = llama.clone();
    qwen.qkv_bias = true;
    qwen.rope_layout = RopeLayout::NeoX;
    // Gemma-3-like: GELU gating, a sliding window on one layer.
    let mut gemma = llama.clone();
    gemma.family = "gemma3";
    gemma.arch_name = "gemma3".into();
    gemma.layers[1].window = Some(3);
    // The default f16 cache (RoPE writes it and rounds q in the same dispatch), an f32 cache,
    // and a q8_0 cache (RoPE on q and k and the two cache writes unfused: at most 11 dispatches a layer).
    let (f16, f32, q8) = (KvType::F16, KvType::F32, KvType::Q8_0);
    let cases = [
        ("llama q4_1", &llama, DType::Q4_1, f16, Some(8)),
        ("llama q4_1, f32 cache", &llama, DType::Q4_1, f32, Some(8)),
        ("llama q4_1, q8_0 cache", &llama, DType::Q4_1, q8, Some(11)),
        ("llama q8_0", &llama, DType::Q8_0, f16, Some(8)),
        ("llama q5_0", &llama, DType::Q5_0, f16, Some(8)),
        ("qwen2 q4_0", &qwen, DType::Q4_0, f16, None),
        ("gemma3 q5_1", &gemma, DType::Q5_1, f16, None),
        ("llama q4_K (not fused)", &llama, DType::Q4K, f16, None),
    ];
    for ((what, config, dtype, kv, per_layer), gpu_geometry) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let what = &format!("{what}{}", if gpu_geometry { ", GPU matvec" } else { "" });
        let Some(fused) = backend(true, gpu_geometry) else { return };
        let Some(plain) = backend(false, gpu_geometry) else { return };
        let (a, launches_fused) = run(config, dtype, kv, fused);
        let (b, launches_plain) = run(config, dtype, kv, plain);
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x.iter().all(|v| v.is_finite()), "{what}: step {step}: fused logits not finite");
            let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{what}: step {step}: fused logits differ from unfused ones");
        }
        eprintln!("{what}: {launches_fused} dispatches per decode step fused, {launches_plain} unfused");
        assert!(launches_fused <= launches_plain, "{what}");
        if let Some(n) = per_layer {
            // Outside the layers: the embedding, the final norm, the output product, and the
            // read-out of the last row.
            let outside = 4;
            assert!(launches_fused <= n * config.n_layer + outside, "{what}: {launches_fused} dispatches for {} layers", config.n_layer);
            assert!(launches_fused < launches_plain, "{what}: nothing fused");
        }
    }
}
