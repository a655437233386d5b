//! Activation formats: what an f32 activation row becomes before it meets a weight row in
//! `vec_dot` (llama.cpp's `vec_dot_type`). Quantizing the activation once per row lets every
//! weight block be consumed with integer multiply-adds.
//!
//! | weight          | activation | block (bytes)                                          |
//! |-----------------|------------|--------------------------------------------------------|
//! | Q4_0, Q5_0, Q8_0| Q8_0       | `d: f16, qs: [i8; 32]` (34), see `q8_0.rs`              |
//! | Q4_1, Q5_1      | Q8_1       | `d: f16, s: f16 = d·Σqs, qs: [i8; 32]` (36)             |
//! | Q4_K, Q5_K, Q6_K| Q8_K       | `d: f32, qs: [i8; 256], bsums: [i16; 16]` (292)         |
//! | F32, F16, BF16  | f32        | 4 bytes per element, little-endian                      |
//!
//! Q8_1 and Q8_K follow ggml's `quantize_row_q8_1_ref` and `quantize_row_q8_K_ref`.

use super::float::put_f16;
use super::kquant::{QK_K, nearest_int};
use crate::DType;

pub(super) const Q8_1_BLOCK: usize = 36;
pub(super) const Q8_K_BLOCK: usize = 292;

/// Bytes of an activation row of `n` elements for weights of type `weight`.
pub(super) fn act_bytes(weight: DType, n: usize) -> usize {
    match weight {
        DType::F32 | DType::F16 | DType::BF16 => n * 4,
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => n / 32 * super::q8_0::BLOCK,
        DType::Q4_1 | DType::Q5_1 => n / 32 * Q8_1_BLOCK,
        DType::Q4K | DType::Q5K | DType::Q6K => n / QK_K * Q8_K_BLOCK,
        DType::U32 => panic!("u32 is not a weight type"),
    }
}

pub(super) fn quantize_act(weight: DType, x: &[f32], dst: &mut [u8]) {
    match weight {
        DType::F32 | DType::F16 | DType::BF16 => super::float::quantize(DType::F32, x, dst),
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => quantize_fast::<false>(x, dst),
        DType::Q4_1 | DType::Q5_1 => quantize_fast::<true>(x, dst),
        DType::Q4K | DType::Q5K | DType::Q6K => quantize_q8_k(x, dst),
        DType::U32 => panic!("u32 is not a weight type"),
    }
}

/// Entries of [`act_scales`] for an activation row of `n` elements: two per 32-element block for
/// the 32-weight formats, none for the others.
pub(super) fn act_scales_len(weight: DType, n: usize) -> usize {
    if weight.block_len() == 32 { n / 32 * 2 } else { 0 }
}

/// The per-block scales of a quantized activation row widened to f32, `[d, s]` per block (s = 0
/// for Q8_0 blocks, which have none): the SIMD kernels read them ready to multiply instead of
/// converting the same f16s again for every weight row.
pub(super) fn act_scales(weight: DType, act: &[u8], out: &mut [f32]) {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    match weight {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => {
            for (b, o) in act.chunks_exact(super::q8_0::BLOCK).zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&[f16(b), 0.0]);
            }
        }
        DType::Q4_1 | DType::Q5_1 => {
            for (b, o) in act.chunks_exact(Q8_1_BLOCK).zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&[f16(b), f16(&b[2..])]);
            }
        }
        _ => {}
    }
}

/// `roundf` (ties away from zero) in a form the compiler vectorises: x − trunc(x) is exact, so
/// this equals `x.round()` for every f32 (NaN stays NaN, ±∞ stays ±∞).
#[inline(always)]
fn round_away(x: f32) -> f32 {
    let t = x.trunc();
    if (x - t).abs() >= 0.5 { t + 1.0f32.copysign(x) } else { t }
}

/// Q8_0 (`Q81` = false, 34-byte blocks) or Q8_1 (36) activation blocks with the reference
/// arithmetic of [`super::q8_0::quantize`] and [`quantize_q8_1`], bit for bit, written so that it
/// vectorises: the largest magnitude as an integer maximum of the bits without the sign (the
/// same order as the floats' for every non-NaN value) and `round_away` for `roundf`. Activation
/// quantization was 7% of a SmolLM2 prefill in scalar `roundf` calls.
fn quantize_fast<const Q81: bool>(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature the function is compiled for.
        return unsafe { quantize_fast_avx2::<Q81>(src, dst) };
    }
    quantize_blocks::<Q81>(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_fast_avx2<const Q81: bool>(src: &[f32], dst: &mut [u8]) {
    quantize_blocks::<Q81>(src, dst)
}

#[inline(always)]
fn quantize_blocks<const Q81: bool>(src: &[f32], dst: &mut [u8]) {
    let (block, at) = if Q81 { (Q8_1_BLOCK, 4) } else { (super::q8_0::BLOCK, 2) };
    for (x, b) in src.chunks_exact(32).zip(dst.chunks_exact_mut(block)) {
        let x: &[f32; 32] = x.try_into().expect("32-element chunk");
        let amax = f32::from_bits(x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i8; 32];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = round_away(v * id) as i8;
        }
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        b[at..at + 32].copy_from_slice(&q.map(|v| v as u8));
        put_f16(b, 0, d);
        if Q81 {
            put_f16(b, 2, sum as f32 * d);
        }
    }
}

/// ggml `quantize_row_q8_1_ref`: Q8_0 plus s = f16(d · Σ q).
#[cfg(test)]
fn quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(32).zip(dst.chunks_exact_mut(Q8_1_BLOCK)) {
        let amax = x
            .iter()
            .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b[4..].iter_mut().zip(x) {
            let qi = (v * id).round() as i8;
            sum += qi as i32;
            *q = qi as u8;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

/// ggml `quantize_row_q8_K_ref`: d = max / −127 (f32), q = nearest_int(x / d) ≤ 127, and the
/// sums of each 16 quants (used by K-quant dots to apply per-sub-block minimums).
fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q8_K_BLOCK)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves bsums untouched here; zeros are what they would sum to.
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b[4..4 + QK_K].iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8 as u8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = b[4 + 16 * j..4 + 16 * (j + 1)]
                .iter()
                .map(|&q| q as i8 as i32)
                .sum();
            b[260 + 2 * j..262 + 2 * j].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// Reads a Q8_K block: (d, quants, bsums).
#[inline(always)]
pub(super) fn q8_k_parts(b: &[u8]) -> (f32, &[u8], &[u8]) {
    (
        f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        &b[4..260],
        &b[260..292],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::float::f16_at;

    #[test]
    fn round_away_is_roundf() {
        let mut xs = vec![0.5f32, -0.5, 1.5, -1.5, 2.5, 0.49999997, -0.49999997, 8388607.5, 8388608.0, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE, 1e-45];
        let mut state = 1u64;
        for _ in 0..100_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            xs.push(f32::from_bits((state >> 32) as u32));
            xs.push(((state >> 40) as f32 / 64.0) * if state & 1 == 0 { 1.0 } else { -1.0 }); // exact halves
        }
        for x in xs {
            let (got, want) = (round_away(x), x.round());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{x}: {got} vs {want}");
        }
    }

    /// The vectorised activation quantizers write the reference's bytes, ties and all.
    #[test]
    fn fast_quantizers_equal_the_references() {
        for seed in 0..20u64 {
            let n = 32 * (1 + seed as usize % 7);
            let mut x = crate::quant::testutil::random_row(seed, n);
            // Values on exact halves of the scale: amax 127 → d = 1, so x is q ± 0.5 exactly.
            if seed % 2 == 0 {
                for (i, v) in x.iter_mut().enumerate() {
                    *v = if i % 32 == 0 { 127.0 } else { (i % 17) as f32 - 8.5 };
                }
            }
            let mut want = vec![0u8; n / 32 * super::super::q8_0::BLOCK];
            let mut got = want.clone();
            super::super::q8_0::quantize(&x, &mut want);
            quantize_fast::<false>(&x, &mut got);
            assert_eq!(got, want, "q8_0, seed {seed}");
            let mut want = vec![0u8; n / 32 * Q8_1_BLOCK];
            let mut got = want.clone();
            quantize_q8_1(&x, &mut want);
            quantize_fast::<true>(&x, &mut got);
            assert_eq!(got, want, "q8_1, seed {seed}");
        }
    }

    #[test]
    fn q8_1_known_block() {
        // amax = 1.27 → d = 0.01; x_j = 0.01·(j − 16) → q_j = j − 16, Σq = −16.
        let x: Vec<f32> = (0..32)
            .map(|j| {
                if j == 31 {
                    -1.27
                } else {
                    0.01 * (j as f32 - 16.0)
                }
            })
            .collect();
        let mut b = vec![0u8; Q8_1_BLOCK];
        quantize_q8_1(&x, &mut b);
        let d = f16_at(&b, 0);
        assert_eq!(d, half::f16::from_f32(0.01).to_f32());
        let q: Vec<i32> = b[4..].iter().map(|&v| v as i8 as i32).collect();
        let want: Vec<i32> = (0..32)
            .map(|j| if j == 31 { -127 } else { j - 16 })
            .collect();
        assert_eq!(q, want);
        let sum: i32 = want.iter().sum();
        assert_eq!(
            f16_at(&b, 2),
            half::f16::from_f32(sum as f32 * 0.01).to_f32()
        );
    }

    #[test]
    fn q8_k_known_block() {
        // The largest magnitude is negative (−127) → iscale = −127/max = 1 and d = 1, so each
        // quant is nearest_int(x), which rounds ties to even (unlike roundf in Q8_0).
        let mut x = vec![0.0f32; QK_K];
        x[0] = -127.0;
        x[1] = 25.0;
        x[16] = 0.5; // → 0
        x[17] = 1.5; // → 2
        x[18] = 2.5; // → 2
        x[19] = -3.5; // → −4
        let mut b = vec![0u8; Q8_K_BLOCK];
        quantize_q8_k(&x, &mut b);
        let (d, qs, bsums) = q8_k_parts(&b);
        assert_eq!(d, 1.0);
        let q: Vec<i8> = qs[..20].iter().map(|&v| v as i8).collect();
        assert_eq!(&q[..2], &[-127, 25]);
        assert_eq!(&q[16..20], &[0, 2, 2, -4]);
        assert_eq!(i16::from_le_bytes([bsums[0], bsums[1]]), -102);
        assert_eq!(i16::from_le_bytes([bsums[2], bsums[3]]), 0);
    }
}
