//! `vec_dot` tests for every weight type: against an f32 dot of the dequantized row, and (on
//! x86) the AVX2 and AVX-512 kernels against the scalar reference.

use super::float::{f16_at, f32s};
use super::testutil::random_row;
use super::*;

/// Row lengths per type: odd block counts (7 blocks, 3 super-blocks) catch unrolled loops that
/// drop a tail; float rows get lengths that are not multiples of the SIMD width; 640 is Gemma 3
/// 270M's width (20 blocks).
fn lengths(dtype: DType) -> Vec<usize> {
    match dtype.block_len() {
        1 => vec![1, 7, 32, 37, 100, 576],
        // 131 blocks: more than two of the AVX2 kernels' 64-block chunks, and an odd count
        32 => vec![32, 64, 3 * 32, 5 * 32, 7 * 32, 576, 640, 131 * 32],
        _ => vec![256, 3 * 256, 2 * 256],
    }
}

struct Case {
    x: Vec<f32>,
    w: Vec<u8>,
    wf: Vec<f32>,
    act: Vec<u8>,
}

fn case(dtype: DType, n: usize, seed: u64) -> Case {
    let mut x = random_row(1000 + seed, n);
    // A few large activations, as real hidden states have, so scales differ between blocks.
    for i in (0..n).step_by(53) {
        x[i] *= 8.0;
    }
    let src = random_row(seed, n);
    let mut w = vec![0u8; dtype.row_bytes(n).unwrap()];
    quantize_row(dtype, &src, &mut w);
    let mut wf = vec![0.0f32; n];
    dequantize_row(dtype, &w, &mut wf);
    let mut act = vec![0u8; act_bytes(dtype, n)];
    quantize_act(dtype, &x, &mut act);
    Case { x, w, wf, act }
}

/// The activation row as the dot sees it, back in f32.
fn dequantize_act(weight: DType, act: &[u8]) -> Vec<f32> {
    let q8 = |blk: usize, d_at: fn(&[u8]) -> f32, qs_at: usize| -> Vec<f32> {
        act.chunks_exact(blk)
            .flat_map(|b| {
                let d = d_at(b);
                b[qs_at..]
                    .iter()
                    .take(blk - qs_at)
                    .map(move |&q| d * q as i8 as f32)
            })
            .collect()
    };
    match weight {
        DType::F32 | DType::F16 | DType::BF16 => f32s(act).collect(),
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => q8(34, |b| f16_at(b, 0), 2),
        DType::Q4_1 | DType::Q5_1 => q8(36, |b| f16_at(b, 0), 4),
        _ => act
            .chunks_exact(292)
            .flat_map(|b| {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                b[4..260].iter().map(move |&q| d * q as i8 as f32)
            })
            .collect(),
    }
}

#[test]
fn vec_dot_matches_f32_dot_of_dequantized_rows() {
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            for seed in 0..3 {
                let c = case(dtype, n, seed);
                // Both the dispatched kernel and the scalar reference must meet the bound.
                let got = vec_dot(dtype, n, &c.w, &c.act);
                let got_scalar = vec_dot_scalar(dtype, &c.w, &c.act);
                let want: f64 =
                    c.wf.iter()
                        .zip(&c.x)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                // Worst-case bound for the activation quantization: each activation moves by at
                // most half its block's step (amax/127, amax over 32 or 256 values) → Σ|w|·step/2;
                // the f16 rounding of activation scales (and of Q8_1's s) is relative 2^-11 of
                // |q·d| ≤ |x| per element, times |w| or |m| ≤ max|w| → 2e-3·max|w|·Σ|x|; f32
                // accumulation adds ~1e-5 relative. Float weight types see none of the first two.
                let ab = match dtype.block_len() {
                    1 => 1,
                    32 => 32,
                    _ => 256,
                };
                let quantized_act = dtype.is_quantized();
                let mut bound = 1e-5
                    * c.wf
                        .iter()
                        .zip(&c.x)
                        .map(|(a, b)| (a * b).abs())
                        .sum::<f32>()
                    + 1e-6;
                if quantized_act {
                    let wmax = c.wf.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (wb, xb) in c.wf.chunks(ab).zip(c.x.chunks(ab)) {
                        let step = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                        bound += wb.iter().map(|v| v.abs()).sum::<f32>() * step / 2.0;
                        bound += 2e-3 * wmax * xb.iter().map(|v| v.abs()).sum::<f32>();
                    }
                }
                for got in [got, got_scalar] {
                    let err = (got as f64 - want).abs() as f32;
                    assert!(
                        err <= bound,
                        "{dtype} n={n} seed={seed}: got {got}, want {want}, err {err} > bound {bound}"
                    );
                }
            }
        }
    }
}

#[test]
fn vec_dot_matches_dequantized_activation_tightly() {
    // Against the activation as quantized, the dot is exact integer math times f32 scales, so
    // only f32 rounding remains (relative ~1e-6 per block, summed) — except Q4_1 and Q5_1, whose
    // m·s term uses s = f16(d·Σq) instead of d16·Σq: relative 2^-10 of |m|·|s| per block.
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            let c = case(dtype, n, 7);
            let xa = dequantize_act(dtype, &c.act);
            assert_eq!(xa.len(), n);
            let got = vec_dot(dtype, n, &c.w, &c.act);
            let got_scalar = vec_dot_scalar(dtype, &c.w, &c.act);
            let want: f64 =
                c.wf.iter()
                    .zip(&xa)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
            let mut bound = 2e-5
                * c.wf
                    .iter()
                    .zip(&xa)
                    .map(|(a, b)| (a * b).abs())
                    .sum::<f32>()
                + 1e-5;
            if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                for (wb, ab) in c.w.chunks(dtype.block_bytes()).zip(c.act.chunks(36)) {
                    bound += 1e-3 * (f16_at(wb, 2) * f16_at(ab, 2)).abs();
                }
            }
            for got in [got, got_scalar] {
                let err = (got as f64 - want).abs() as f32;
                assert!(
                    err <= bound,
                    "{dtype} n={n}: got {got}, want {want}, err {err} > bound {bound}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_matches_scalar() {
    if !x86::available() {
        return; // nothing to compare on this CPU
    }
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            for seed in 0..3 {
                let c = case(dtype, n, seed);
                let mut sc = vec![0.0; act_scales_len(dtype, n)];
                act_scales(dtype, n, &c.act, &mut sc);
                let simd = x86::vec_dot(dtype, &c.w, &c.act, &sc)
                    .expect("an AVX2 kernel for every weight type");
                let scalar = vec_dot_scalar(dtype, &c.w, &c.act);
                // Same integer sums; only the order of f32 additions differs.
                let scale: f32 = c.wf.iter().zip(&c.x).map(|(a, b)| (a * b).abs()).sum();
                assert!(
                    (simd - scalar).abs() <= 1e-5 * scale + 1e-6,
                    "{dtype} n={n} seed={seed}: avx2 {simd} vs scalar {scalar}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_matches_scalar_and_avx2() {
    if !x86_vnni::available() {
        return; // nothing to compare on this CPU
    }
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            for seed in 0..3 {
                let c = case(dtype, n, seed);
                let mut sc = vec![0.0; act_scales_len(dtype, n)];
                act_scales(dtype, n, &c.act, &mut sc);
                let Some([simd]) = x86_vnni::vec_dot_rows(dtype, &c.w, [&c.act[..]], [&sc[..]]) else {
                    assert_ne!(dtype.block_len(), 32, "no AVX-512 kernel for {dtype}");
                    continue;
                };
                let scalar = vec_dot_scalar(dtype, &c.w, &c.act);
                let scale: f32 = c.wf.iter().zip(&c.x).map(|(a, b)| (a * b).abs()).sum();
                assert!(
                    (simd - scalar).abs() <= 1e-5 * scale + 1e-6,
                    "{dtype} n={n} seed={seed}: avx512 {simd} vs scalar {scalar}"
                );
                // And the AVX2 kernel's bits exactly (same products, same order of additions).
                if x86::available() {
                    let avx2 = x86::vec_dot(dtype, &c.w, &c.act, &sc).expect("an AVX2 kernel");
                    assert_eq!(simd.to_bits(), avx2.to_bits(), "{dtype} n={n} seed={seed}: avx512 {simd} vs avx2 {avx2}");
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "q4_1 weight row")]
fn vec_dot_rejects_wrong_row_length() {
    vec_dot(DType::Q4_1, 64, &[0u8; 20], &[0u8; 72]);
}

/// Dotting several activation rows at once gives each row exactly its single-row result, so
/// prefill, decode and batched decode agree bit for bit.
#[test]
fn rows_at_once_equal_one_at_a_time_bit_for_bit() {
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            let c: Vec<Case> = (0..4).map(|seed| case(dtype, n, 10 + seed)).collect();
            let w = &c[0].w;
            let acts = [&c[0].act[..], &c[1].act[..], &c[2].act[..], &c[3].act[..]];
            let four = vec_dot_rows(dtype, n, w, acts);
            for (r, a) in acts.iter().enumerate() {
                assert_eq!(four[r].to_bits(), vec_dot(dtype, n, w, a).to_bits(), "{dtype} n={n} row {r}");
            }
        }
    }
}

/// A tile of weight rows gives each row its `vec_dot_rows_scaled` result, bit for bit, with 4
/// activation rows and with 8 (the offset formats' 8-row kernels sum m·s in the rows' lanes).
#[test]
fn tile_equals_row_by_row() {
    fn check<const R: usize>(dtype: DType, n: usize) {
        let rows: Vec<Case> = (0..5).map(|seed| case(dtype, n, 20 + seed)).collect();
        let w: Vec<u8> = rows.iter().flat_map(|c| c.w.clone()).collect();
        let cases: Vec<Case> = (0..R as u64).map(|seed| case(dtype, n, 40 + seed)).collect();
        let acts: [&[u8]; R] = std::array::from_fn(|i| &cases[i].act[..]);
        let sc: Vec<Vec<f32>> = acts
            .iter()
            .map(|a| {
                let mut s = vec![0.0; act_scales_len(dtype, n)];
                act_scales(dtype, n, a, &mut s);
                s
            })
            .collect();
        let scales: [&[f32]; R] = std::array::from_fn(|i| &sc[i][..]);
        let mut got = vec![];
        vec_dot_tile(dtype, n, &w, acts, scales, &mut |r, ys| got.push((r, ys.map(f32::to_bits))));
        let want: Vec<_> = rows.iter().enumerate().map(|(r, c)| (r, vec_dot_rows_scaled(dtype, n, &c.w, acts, scales).map(f32::to_bits))).collect();
        assert_eq!(got, want, "{dtype} n={n} R={R}");
        for (r, c) in rows.iter().enumerate() {
            for (i, a) in acts.iter().enumerate() {
                assert_eq!(got[r].1[i], vec_dot(dtype, n, &c.w, a).to_bits(), "{dtype} n={n} R={R} row {r} activation {i}");
            }
        }
    }
    for dtype in DType::WEIGHT_TYPES {
        for n in lengths(dtype) {
            check::<4>(dtype, n);
            check::<8>(dtype, n);
        }
    }
}
