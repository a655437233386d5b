//! Kernel microbenchmarks in the style of llm.c's `dev/cuda`: every variant is first checked
//! against the plain reference, then timed, and the figure that predicts decode speed is printed
//! — GB/s of weight bytes streamed by the matrix-vector product (decode reads every weight once
//! per token, so tokens/s ≈ bandwidth / model bytes). On the CPU, the same weights against
//! `GEMM_TOKENS` activation rows (prefill's matrix-matrix product) print GMAC/s, the figure that
//! predicts prefill speed (tokens/s ≈ MAC/s / parameters).
//!
//! `cargo bench -p forge-engine --bench kernels [-- FILTER]`
//!
//! Backends: the CPU (quantized-activation dot products, all threads) and, when an adapter is
//! present, wgpu (one-op graphs through the backend, timed end to end including submission and
//! the readback of the result).

use std::time::Instant;

use forge_engine::DType;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::backend::{Backend, ParamDesc, ParamKind};
use forge_engine::graph::Graph;
use forge_engine::quant;
use forge_engine::tensor::HostTensor;

/// SmolLM2-135M's FFN up-projection (N × K) and its vocabulary projection; Gemma 3 270M's FFN
/// down-projection (K = 2048, so the 256-weight K-quants run too).
const SHAPES: [(usize, usize); 3] = [(1536, 576), (49152, 576), (640, 2048)];

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn weight(dtype: DType, n: usize, k: usize) -> (HostTensor, Vec<f32>) {
    let vals = random(n * k, n as u64 ^ k as u64);
    let rb = dtype.row_bytes(k).unwrap();
    let mut bytes = vec![0u8; rb * n];
    let mut deq = vec![0f32; n * k];
    for r in 0..n {
        quant::quantize_row(dtype, &vals[r * k..(r + 1) * k], &mut bytes[r * rb..(r + 1) * rb]);
        quant::dequantize_row(dtype, &bytes[r * rb..(r + 1) * rb], &mut deq[r * k..(r + 1) * k]);
    }
    (HostTensor::from_bytes(dtype, vec![n, k], bytes).unwrap(), deq)
}

/// A one-matmul graph `x · wᵀ` on `backend`, with `w` uploaded as a weight.
fn matmul_graph(backend: &mut dyn Backend, w: &HostTensor, t: usize) -> Graph {
    let desc = ParamDesc { name: "w".into(), shape: w.shape.clone(), dtype: w.dtype, kind: ParamKind::Weight };
    let id = backend.create_param(&desc, Some(w)).expect("upload");
    let mut g = Graph::new();
    let x = g.input(&[t, w.shape[1]], DType::F32);
    let wn = g.param(id, &desc);
    let y = g.matmul(x, wn).unwrap();
    g.output(y);
    g
}

/// `got` (one output row) against the f32 dot of the dequantized weights `deq` with `x`. Block
/// formats meet 8-bit activations (as in llama.cpp), hence the looser bound for them.
fn check_row(name: &str, dtype: DType, got: &[f32], deq: &[f32], x: &[f32]) {
    let k = x.len();
    let scale = deq.iter().map(|v| v.abs()).fold(0.0, f32::max) * (k as f32).sqrt();
    let tol = if dtype.is_quantized() { 2e-2 } else { 1e-4 } * scale;
    for (r, w) in deq.chunks_exact(k).enumerate() {
        let want: f32 = w.iter().zip(x).map(|(a, b)| a * b).sum();
        assert!((got[r] - want).abs() <= tol, "{name} {dtype} row {r}: {} vs {want}", got[r]);
    }
}

fn bench(name: &str, backend: &mut dyn Backend, dtype: DType, n: usize, k: usize) {
    let (w, deq) = weight(dtype, n, k);
    let x = random(k, 99);
    let g = matmul_graph(backend, &w, 1);
    let input = [HostTensor::from_f32(vec![1, k], &x).unwrap()];
    // Check first: against the f32 dot of the dequantized weights.
    let got = backend.execute(&g, &input).expect("execute")[0].to_f32_vec();
    check_row(name, dtype, &got, &deq, &x);
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(backend.execute(&g, &input).expect("execute"));
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    let bytes = w.as_bytes().len() as f64;
    println!("{name:5} matvec {:5} {n:6}×{k:<4} {:8.1} µs  {:6.2} GB/s of weights", dtype.name(), s * 1e6, bytes / s / 1e9);
}

/// Activation rows of the matrix-matrix benchmark: a prefill chunk's worth.
const GEMM_TOKENS: usize = 128;

/// `x · wᵀ` for `GEMM_TOKENS` rows of x (all the same row), then timed in GMAC/s. Checked: on
/// the CPU every row must have the bits of the matrix-vector result (the same bits whatever the
/// number of rows); elsewhere (the tiled GPU kernel sums in another order) every row must be
/// within `check_row`'s bound of the f32 reference.
fn bench_gemm(name: &str, backend: &mut dyn Backend, dtype: DType, n: usize, k: usize, same_bits: bool) {
    let (w, deq) = weight(dtype, n, k);
    let x = random(k, 7);
    let rows: Vec<f32> = x.iter().copied().cycle().take(k * GEMM_TOKENS).collect();
    let one = matmul_graph(backend, &w, 1);
    let want = backend.execute(&one, &[HostTensor::from_f32(vec![1, k], &x).unwrap()]).expect("execute")[0].to_f32_vec();
    let g = matmul_graph(backend, &w, GEMM_TOKENS);
    let input = [HostTensor::from_f32(vec![GEMM_TOKENS, k], &rows).unwrap()];
    let got = backend.execute(&g, &input).expect("execute")[0].to_f32_vec();
    for (t, row) in got.chunks_exact(n).enumerate() {
        if same_bits {
            assert_eq!(row, &want[..], "{name} {dtype} gemm row {t} differs from the matvec");
        } else {
            check_row(name, dtype, row, &deq, &x);
        }
    }
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(backend.execute(&g, &input).expect("execute"));
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    let macs = (n * k * GEMM_TOKENS) as f64;
    println!("{name:5} gemm   {:5} {n:6}×{k:<4} ×{GEMM_TOKENS} {:8.1} µs  {:6.2} GMAC/s", dtype.name(), s * 1e6, macs / s / 1e9);
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    for (n, k) in SHAPES {
        for dtype in DType::WEIGHT_TYPES {
            if k % dtype.block_len() != 0 || !format!("cpu {}", dtype.name()).contains(filter.as_str()) {
                continue;
            }
            bench("cpu", &mut CpuBackend::new(), dtype, n, k);
            if n < 4096 {
                bench_gemm("cpu", &mut CpuBackend::new(), dtype, n, k, true);
            }
        }
    }
    wgpu_benches(&filter);
}

#[cfg(not(target_arch = "wasm32"))]
fn wgpu_benches(filter: &str) {
    let mut backend = match forge_engine::backend::wgpu::WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            println!("wgpu: skipped ({e})");
            return;
        }
    };
    println!("wgpu on {}", backend.device());
    for (n, k) in SHAPES {
        for dtype in DType::WEIGHT_TYPES {
            if k % dtype.block_len() != 0 || !format!("wgpu {}", dtype.name()).contains(filter) {
                continue;
            }
            bench("wgpu", &mut backend, dtype, n, k);
            if n < 4096 {
                bench_gemm("wgpu", &mut backend, dtype, n, k, false);
            }
        }
    }
}
