//! Q4_1: 32 weights per 20-byte block (ggml `block_q4_1`):
//! `d: f16, m: f16` then `qs: [u8; 16]`; element j < 16 is the low nibble of `qs[j]`, element
//! j + 16 the high nibble; w = d · q + m.
//! Dot products take Q8_1 activations (`block_q8_1`, see `q8_act.rs`), whose `s = d_a · Σ q_a`
//! turns the offset term into one multiply per block: Σ w·a = d_w·d_a·Σ q_w·q_a + m·s.

use super::float::{f16_at, put_f16};

pub(super) const QK: usize = 32;
pub(super) const BLOCK: usize = 20;

/// ggml `dequantize_row_q4_1`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (j, &q) in b[4..].iter().enumerate() {
            y[j] = (q & 0x0F) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

/// ggml `quantize_row_q4_1_ref`: d = (max − min) / 15, m = min.
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK)) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        for j in 0..16 {
            // `(int8_t)(x + 0.5f)` truncates toward zero; the value is in [0.5, 15.5].
            let lo = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let hi = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            b[4 + j] = lo | (hi << 4);
        }
    }
}

/// ggml `ggml_vec_dot_q4_1_q8_1_generic`.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(BLOCK)
        .zip(act.chunks_exact(super::q8_act::Q8_1_BLOCK))
    {
        let yq = &y[4..];
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (x[4 + j] & 0x0F) as i32 * yq[j] as i8 as i32
                + (x[4 + j] >> 4) as i32 * yq[j + 16] as i8 as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::quant::testutil::*;

    #[test]
    fn q4_1_known_block() {
        // d = 0.25 (f16 0x3400), m = −1.0 (f16 0xBC00); qs[j] = j | (15 − j) << 4.
        let mut b = vec![0x00, 0x34, 0x00, 0xBC];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 0.25 * j as f32 - 1.0);
            assert_eq!(y[j + 16], 0.25 * (15 - j) as f32 - 1.0);
        }
        // min = −1, max = 2.75 → d = 0.25 exactly, so the block comes back unchanged.
        let mut q = vec![0u8; BLOCK];
        quantize(&y, &mut q);
        assert_eq!(q, b);
    }

    #[test]
    fn q4_1_round_trip_error() {
        // Levels cover [min, max] in 15 steps of d; rounding costs at most d/2, plus the f16
        // rounding of d and m (relative 2^-11 of the range).
        round_trip(DType::Q4_1, 7, |x, y| {
            let (lo, hi) = x
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let d = (hi - lo) / 15.0;
            max_abs_diff(x, y) <= d / 2.0 + (hi - lo + lo.abs()) * 2e-3 + 1e-6
        });
    }
}
