//! MatMul and GetRows on every weight type, against the dequantization reference (exact weights,
//! f64 dot) tightly and against the CPU backend (which rounds activations to 8 bits) loosely.

use super::super::testing::{Gpu1, compare, rand_vec};
use crate::backend::{Backend, ParamDesc, ParamKind};
use crate::dtype::DType;
use crate::graph::Graph;
use crate::quant;
use crate::tensor::HostTensor;

/// Row lengths that are not multiples of the workgroup or of 256 where the format allows.
fn k_for(dtype: DType) -> usize {
    match dtype.block_len() {
        1 => 333,
        32 => 96 + 32 * 5 + 32 * 3,
        _ => 256 * 3,
    }
}

fn weight(gpu: &mut Gpu1, dtype: DType, n: usize, k: usize, seed: u64) -> (ParamDesc, crate::backend::ParamId, Vec<f32>) {
    let values = rand_vec(n * k, seed);
    let rb = dtype.row_bytes(k).unwrap();
    let mut bytes = vec![0u8; n * rb];
    for (src, dst) in values.chunks(k).zip(bytes.chunks_mut(rb)) {
        quant::quantize_row(dtype, src, dst);
    }
    let mut deq = vec![0f32; n * k];
    for (src, dst) in bytes.chunks(rb).zip(deq.chunks_mut(k)) {
        quant::dequantize_row(dtype, src, dst);
    }
    let desc = ParamDesc { name: format!("w{seed}"), shape: vec![n, k], dtype, kind: ParamKind::Weight };
    let t = HostTensor::from_bytes(dtype, vec![n, k], bytes).unwrap();
    let id = gpu.create_param(&desc, Some(&t));
    (desc, id, deq)
}

/// Activations as llama.cpp (and the CPU backend) rounds them for `dtype` weights: Q8_0/Q8_1
/// blocks of 32 for the 32-block formats, Q8_K blocks of 256 for K-quants (quant/q8_act.rs).
fn rounded(dtype: DType, x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    match dtype.block_len() {
        32 => out.chunks_mut(32).for_each(|b| {
            let d = b.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let dh = half::f16::from_f32(d).to_f32();
            b.iter_mut().for_each(|v| *v = dh * (*v * id).round());
        }),
        256 => out.chunks_mut(256).for_each(|b| {
            let max = b.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let iscale = if max != 0.0 { -127.0 / max } else { 0.0 };
            let d = if max != 0.0 { 1.0 / iscale } else { 0.0 };
            b.iter_mut().for_each(|v| *v = (iscale * *v).round_ties_even().min(127.0) * d);
        }),
        _ => {}
    }
    out
}

// Tolerances: the shader's weights are bit-identical to `dequantize_row` and its activations to
// `rounded`, so against the f64 dot only the f32 accumulation differs (K ≤ 768 terms: ~1e-6
// relative, 2e-5 leaves margin). The CPU backend's integer dots agree with that up to its own f32
// and f16 roundings (Q8_1 keeps d·Σq as an f16: 2^-11 relative of the offset term): 2e-3.
fn run(gpu: &mut Gpu1, page_bytes: Option<u64>) {
    for (i, dtype) in DType::WEIGHT_TYPES.into_iter().enumerate() {
        check(gpu, dtype, 67, k_for(dtype), &[1, 3, 16, 19, 40], 100 + i as u64, page_bytes);
    }
}

/// MatMul of `[t, k] × [n, k]ᵀ` for each t in `ts`, and GetRows, on one weight of `dtype`.
fn check(gpu: &mut Gpu1, dtype: DType, n: usize, k: usize, ts: &[usize], seed: u64, page_bytes: Option<u64>) {
    if let Some(p) = page_bytes {
        // About a fifth of the rows per page: five dispatches, the last one short.
        gpu.wgpu.page_bytes = p.min((dtype.row_bytes(k).unwrap() * n.div_ceil(5) + 4) as u64);
    }
    let (desc, id, deq) = weight(gpu, dtype, n, k, seed);
    if page_bytes.is_some() {
        assert!(gpu.wgpu.param_pages(id) > 1, "{dtype}: the weight was not split");
    }
    for &t in ts {
        let x = rand_vec(t * k, 7 + t as u64);
        let mut g = Graph::new();
        let xi = g.input(&[t, k], DType::F32);
        let w = g.param(id, &desc);
        let o = g.matmul(xi, w).unwrap();
        g.output(o);
        let inputs = [HostTensor::from_f32(vec![t, k], &x).unwrap()];
        let got = gpu.wgpu.execute(&g, &inputs).unwrap_or_else(|e| panic!("{dtype} t {t}: {e}"));
        let xr = rounded(dtype, &x);
        let exact: Vec<f32> = (0..t * n)
            .map(|e| {
                let (r, c) = (e / n, e % n);
                xr[r * k..(r + 1) * k].iter().zip(&deq[c * k..(c + 1) * k]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32
            })
            .collect();
        let exact = [HostTensor::from_f32(vec![t, n], &exact).unwrap()];
        compare(&format!("matmul {dtype} [{t}, {k}] x [{n}, {k}] vs dequantized"), &got, &exact, 2e-5);
        let cpu = gpu.cpu.execute(&g, &inputs).unwrap();
        compare(&format!("matmul {dtype} [{t}, {k}] x [{n}, {k}] vs cpu"), &got, &cpu, 2e-3);
    }
    // Embedding lookup: exact (the same dequantized values), ids in every page, repeated.
    let ids: Vec<u32> = [0, n - 1, 13, 13, 40, 27, n - 13].iter().map(|&i| i as u32).collect();
    let mut g = Graph::new();
    let w = g.param(id, &desc);
    let ii = g.input(&[ids.len()], DType::U32);
    let o = g.get_rows(w, ii).unwrap();
    g.output(o);
    gpu.check(&format!("get_rows {dtype}"), &g, &[HostTensor::from_u32(vec![ids.len()], &ids).unwrap()], 0.0);
}

/// Q5_0 and Q5_1 at Gemma 3 270M's width (rows of 640 = 20 blocks; Q5_0's 22-byte blocks start
/// alternately on a word and mid-word), an odd row count, and token counts for matvec (1),
/// `matvec_blocks` batches on CPU adapters (3) and the tiled matmul (17), under both matvec
/// geometries and split into pages. (`run` covers them at k = 352 too, where Q5_0 rows of 242
/// bytes also start mid-word every other row.)
#[test]
fn wgpu_q5_at_gemma_width() {
    let Some(mut gpu) = Gpu1::new() else { return };
    let cpu = super::super::Matvec::for_device(wgpu::DeviceType::Cpu);
    let other = if gpu.wgpu.matvec.blocks { super::super::Matvec::for_device(wgpu::DeviceType::DiscreteGpu) } else { cpu };
    for (i, dtype) in [DType::Q5_0, DType::Q5_1].into_iter().enumerate() {
        check(&mut gpu, dtype, 45, 640, &[1, 3, 17], 300 + i as u64, None);
        check(&mut gpu, dtype, 45, 640, &[1, 3], 310 + i as u64, Some(u64::MAX));
    }
    gpu.wgpu.matvec = other;
    for (i, dtype) in [DType::Q5_0, DType::Q5_1].into_iter().enumerate() {
        check(&mut gpu, dtype, 45, 640, &[1, 3], 320 + i as u64, None);
    }
}

#[test]
fn wgpu_matmul_and_get_rows_match_reference_every_dtype() {
    let Some(mut gpu) = Gpu1::new() else { return };
    run(&mut gpu, None);
}

/// The other matvec geometry than the adapter's: GPUs' (16 invocations per row, shared-memory
/// tree) on a CPU adapter, CPU adapters' (`matvec_blocks`, 8 rows per invocation) on a GPU.
#[test]
fn wgpu_matmul_other_matvec_geometry() {
    let Some(mut gpu) = Gpu1::new() else { return };
    let cpu = super::super::Matvec::for_device(wgpu::DeviceType::Cpu);
    let other = if gpu.wgpu.matvec.blocks { super::super::Matvec::for_device(wgpu::DeviceType::DiscreteGpu) } else { cpu };
    gpu.wgpu.matvec = other;
    run(&mut gpu, None);
}

/// Weights split into pages of a few rows: several dispatches per matmul / lookup.
#[test]
fn wgpu_matmul_and_get_rows_on_split_weights() {
    let Some(mut gpu) = Gpu1::new() else { return };
    run(&mut gpu, Some(u64::MAX));
}
