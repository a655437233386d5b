//! Llama 3.1/3.2 RoPE frequency scaling and linear RoPE scaling, on every backend that runs here,
//! held to frequencies computed in this file by Meta's published formula (`apply_scaling` in
//! meta-llama/llama-models `llama/model.py`) — not by the engine's code — through the doctor's
//! plain f64 forward pass (`plain_forward_with_freqs`).
//!
//! The tiny model's RoPE base is 100 and the scaling's original context 64, so at positions up
//! to ~40 all three of the formula's regimes (kept, divided by the factor, blended) turn the
//! queries and keys by visibly different angles.

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::backend::wgpu::WgpuBackend;
use forge_engine::devices::check::{plain_forward_with_freqs, relative_error, tiny_model};
use forge_engine::model::{LayerConfig, RopeFactors};
use forge_engine::session::{Forward, Readout};
use forge_engine::tensor::HostTensor;
use forge_engine::{DType, Model, Session};

const BASE: f64 = 100.0;
const FACTOR: f64 = 8.0;
const LOW_FREQ_FACTOR: f64 = 1.0;
const HIGH_FREQ_FACTOR: f64 = 4.0;
const ORIGINAL_CONTEXT: f64 = 64.0;

/// Meta's `apply_scaling(freqs, scale_factor, low_freq_factor, high_freq_factor,
/// old_context_len)`, transcribed from llama-models:
/// ```python
/// low_freq_wavelen = old_context_len / low_freq_factor
/// high_freq_wavelen = old_context_len / high_freq_factor
/// for freq in freqs:
///     wavelen = 2 * math.pi / freq
///     if wavelen < high_freq_wavelen: new_freqs.append(freq)
///     elif wavelen > low_freq_wavelen: new_freqs.append(freq / scale_factor)
///     else:
///         smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
///         new_freqs.append((1 - smooth) * freq / scale_factor + smooth * freq)
/// ```
/// with `freqs = 1 / theta ** (arange(0, dim, 2) / dim)`.
fn meta_scaled_freqs(dim: usize) -> Vec<f64> {
    let low_freq_wavelen = ORIGINAL_CONTEXT / LOW_FREQ_FACTOR;
    let high_freq_wavelen = ORIGINAL_CONTEXT / HIGH_FREQ_FACTOR;
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / BASE.powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / FACTOR
            } else {
                let smooth = (ORIGINAL_CONTEXT / wavelen - LOW_FREQ_FACTOR) / (HIGH_FREQ_FACTOR - LOW_FREQ_FACTOR);
                (1.0 - smooth) * freq / FACTOR + smooth * freq
            }
        })
        .collect()
}

fn unscaled_freqs(dim: usize) -> Vec<f64> {
    (0..dim / 2).map(|i| 1.0 / BASE.powf((2 * i) as f64 / dim as f64)).collect()
}

/// The doctor's tiny llama (f32 weights) with RoPE base 100.
fn tiny(seed: u64) -> Model {
    let mut m = tiny_model(DType::F32, seed).expect("tiny model");
    m.config.layers = LayerConfig::uniform(m.config.n_layer, BASE as f32, 1.0);
    m
}

/// Logits of every position of `tokens` (a prefill), then one decode step's.
fn run(model: &Model, backend: Box<dyn Backend>, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, backend, 64, &mut |_, _| {}).expect("session");
    let n = tokens.len();
    let Forward::Logits { mut values, .. } = s.forward(&tokens[..n - 1], Readout::LogitsAll).expect("prefill") else { unreachable!() };
    let Forward::Logits { values: last, .. } = s.forward(&tokens[n - 1..], Readout::LogitsLast).expect("decode") else { unreachable!() };
    values.extend(last);
    values
}

fn backends() -> Vec<Box<dyn Backend>> {
    let mut out: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend::new())];
    match WgpuBackend::new() {
        Ok(b) => out.push(Box::new(b)),
        Err(e) if forge_tests::required("FORGE_REQUIRE_WGPU") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
        Err(e) => eprintln!("skipping wgpu: {e}"),
    }
    match forge_engine::backend::cuda::CudaBackend::new(0) {
        Ok(b) => out.push(Box::new(b)),
        Err(e) if forge_tests::required("FORGE_REQUIRE_CUDA") => panic!("FORGE_REQUIRE_CUDA=1 but no CUDA device: {e}"),
        Err(e) => eprintln!("skipping cuda: {e}"),
    }
    out
}

/// Positions 0..40: long enough for every regime of the scaling to move the logits.
fn tokens() -> Vec<u32> {
    (0..40u32).map(|i| (i * 37 + 5) % 259).collect()
}

/// f32 kernels against the f64 pass (sums reordered, activations of f32 weights unrounded); a model without the scaling is
/// ~0.1 away, so this tolerance tells the two apart by a wide margin (asserted below).
const TOLERANCE: f32 = 3e-3;

#[test]
fn llama3_frequency_factors_match_meta_s_formula_on_every_backend() {
    let mut model = tiny(11);
    let d = model.config.rope_dim;
    let scaled = meta_scaled_freqs(d);
    // GGUF's `rope_freqs.weight` holds each frequency's divisor: old / new.
    let factors: Vec<f32> = unscaled_freqs(d).iter().zip(&scaled).map(|(f, s)| (f / s) as f32).collect();
    assert!(factors.iter().any(|&f| f == 1.0) && factors.iter().any(|&f| (f - 8.0).abs() < 1e-5) && factors.iter().any(|&f| f > 1.0 && f < 8.0), "every regime present: {factors:?}");
    model.config.rope_factors = RopeFactors::Tensor;
    model.weights.insert("rope_freqs.weight".into(), HostTensor::from_f32(vec![d / 2], &factors).unwrap());

    let toks = tokens();
    let want = plain_forward_with_freqs(&model, &toks, &|_, i| scaled[i]);
    let unscaled = plain_forward_with_freqs(&model, &toks, &|_, i| unscaled_freqs(d)[i]);
    let gap = relative_error(&want, &unscaled);
    assert!(gap > 10.0 * TOLERANCE, "the scaling must matter at these positions: {gap:.1e}");
    for b in backends() {
        let name = b.name();
        let got = run(&model, b, &toks);
        let err = relative_error(&want, &got);
        eprintln!("{name}: llama3 RoPE scaling, relative error {err:.1e} from the f64 pass (unscaled model: {gap:.1e})");
        assert!(err <= TOLERANCE, "{name}: {err:.1e} from Meta's frequencies");
    }
}

#[test]
fn linear_scaling_divides_every_frequency_on_every_backend() {
    let mut model = tiny(12);
    model.config.layers = LayerConfig::uniform(model.config.n_layer, BASE as f32, 0.25);
    let d = model.config.rope_dim;
    let toks = tokens();
    let want = plain_forward_with_freqs(&model, &toks, &|_, i| unscaled_freqs(d)[i] / 4.0);
    for b in backends() {
        let name = b.name();
        let err = relative_error(&want, &run(&model, b, &toks));
        eprintln!("{name}: linear RoPE scaling ×1/4, relative error {err:.1e}");
        assert!(err <= TOLERANCE, "{name}: {err:.1e}");
    }
}

/// The loaders: `rope_scaling {rope_type: "llama3"}` in config.json gives the same factors as
/// Meta's formula, and `{type: "linear"}` / GGUF `rope.scaling.*` the frequency scale.
#[test]
fn loaders_read_rope_scaling() {
    use forge_tests::tiny::{TinyArch, TinyModel, TinySpec, temp_dir};
    let dir = temp_dir("rope-scaling");
    let t = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::F32), &dir);
    let config_path = t.hf_dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["rope_theta"] = serde_json::json!(BASE);
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": FACTOR, "low_freq_factor": LOW_FREQ_FACTOR, "high_freq_factor": HIGH_FREQ_FACTOR, "original_max_position_embeddings": ORIGINAL_CONTEXT});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let m = Model::load(&t.hf_dir).expect("a llama3-scaled model loads");
    let d = m.config.rope_dim;
    let got = m.weights["rope_freqs.weight"].to_f32_vec();
    let want: Vec<f64> = unscaled_freqs(d).iter().zip(meta_scaled_freqs(d)).map(|(f, s)| f / s).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((*g as f64 - w).abs() <= 1e-5 * w, "factor {i}: {g} vs Meta's {w}");
    }

    config["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 4.0});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let m = Model::load(&t.hf_dir).expect("a linearly scaled model loads");
    assert!(m.config.layers.iter().all(|l| l.rope_freq_scale == 0.25) && !m.weights.contains_key("rope_freqs.weight"));

    config["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let e = Model::load(&t.hf_dir).expect_err("an unimplemented scaling is refused");
    assert!(e.to_string().contains("yarn"), "{e}");

    let dir2 = temp_dir("rope-scaling-gguf");
    let g = TinyModel::write_with_meta(
        &TinySpec::new(TinyArch::Llama, DType::F32),
        &dir2,
        vec![("llama.rope.scaling.type".into(), forge_engine::formats::gguf::MetaValue::Str("linear".into())), ("llama.rope.scaling.factor".into(), forge_engine::formats::gguf::MetaValue::F32(8.0))],
    );
    let m = Model::load(&g.gguf).expect("gguf loads");
    assert!(m.config.layers.iter().all(|l| l.rope_freq_scale == 0.125));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}
