//! Q5_1: 32 weights per 24-byte block (ggml `block_q5_1`):
//! `d: f16, m: f16`, `qh: u32` (little-endian; bit j is the fifth bit of element j), then
//! `qs: [u8; 16]` (nibbles as in Q5_0); w = d · q + m.
//! Dot products take Q8_1 activations (`block_q8_1`, see `q8_act.rs`), as Q4_1 does:
//! Σ w·a = d_w·d_a·Σ q_w·q_a + m·s.

use super::float::{f16_at, put_f16};
use super::q5_0::{levels, pack, qh_at};

pub(super) const QK: usize = 32;
pub(super) const BLOCK: usize = 24;

/// ggml `dequantize_row_q5_1`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (y, q) in y.iter_mut().zip(levels(qh_at(b, 4), &b[8..])) {
            *y = q as f32 * d + m;
        }
    }
}

/// ggml `quantize_row_q5_1_ref`: d = (max − min) / 31, m = min.
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
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            // `(uint8_t)(x + 0.5f)` truncates; the value is in [0.5, 31.5] (ggml has no clamp).
            *q = ((v - min) * id + 0.5) as u8;
        }
        let qh = pack(&q, &mut b[8..]);
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

/// ggml `ggml_vec_dot_q5_1_q8_1_generic`.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(BLOCK)
        .zip(act.chunks_exact(super::q8_act::Q8_1_BLOCK))
    {
        let sumi: i32 = levels(qh_at(x, 4), &x[8..])
            .iter()
            .zip(&y[4..])
            .map(|(&q, &a)| q as i32 * a as i8 as i32)
            .sum();
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
    fn q5_1_known_block() {
        // d = 0.125 (f16 0x3000), m = −2.0 (f16 0xC000); the level of element j is j, so the
        // fifth bits are set for j ≥ 16 (qh = 0xFFFF0000) and qs[j] = j | j << 4.
        let mut b = vec![0x00, 0x30, 0x00, 0xC0, 0x00, 0x00, 0xFF, 0xFF];
        b.extend((0..16u8).map(|j| j | (j << 4)));
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        for (j, &v) in y.iter().enumerate() {
            assert_eq!(v, 0.125 * j as f32 - 2.0, "element {j}");
        }
        // min = −2, max = 1.875 → d = 0.125 exactly, so the block comes back unchanged.
        let mut q = vec![0u8; BLOCK];
        quantize(&y, &mut q);
        assert_eq!(q, b);
    }

    #[test]
    fn q5_1_round_trip_error() {
        // Levels cover [min, max] in 31 steps of d; rounding costs at most d/2, plus the f16
        // rounding of d and m (relative 2^-11 of the range).
        round_trip(DType::Q5_1, 7, |x, y| {
            let (lo, hi) = x
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let d = (hi - lo) / 31.0;
            max_abs_diff(x, y) <= d / 2.0 + (hi - lo + lo.abs()) * 2e-3 + 1e-6
        });
    }
}
