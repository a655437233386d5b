//! Q4_0: 32 weights per 18-byte block (ggml `block_q4_0`):
//! `d: f16` then `qs: [u8; 16]`; element j < 16 is the low nibble of `qs[j]`, element j + 16
//! the high nibble; w = d · (q − 8).
//! Dot products take Q8_0 activations (`block_q8_0`, see `q8_0.rs`).

use super::float::{f16_at, put_f16};

pub(super) const QK: usize = 32;
pub(super) const BLOCK: usize = 18;

/// ggml `dequantize_row_q4_0`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, &q) in b[2..].iter().enumerate() {
            y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// ggml `quantize_row_q4_0_ref`: d = (the value of largest magnitude) / −8.
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for j in 0..16 {
            // `(int8_t)(x + 8.5f)` truncates toward zero; the value is in [0.5, 16.5].
            let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let hi = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
            b[2 + j] = lo | (hi << 4);
        }
    }
}

/// ggml `ggml_vec_dot_q4_0_q8_0_generic`: Σ_blocks (d_w · d_a) · Σ (q_w − 8) · q_a.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(BLOCK)
        .zip(act.chunks_exact(super::q8_0::BLOCK))
    {
        let yq = &y[2..];
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = (x[2 + j] & 0x0F) as i32 - 8;
            let v1 = (x[2 + j] >> 4) as i32 - 8;
            sumi += v0 * yq[j] as i8 as i32 + v1 * yq[j + 16] as i8 as i32;
        }
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::quant::testutil::*;

    #[test]
    fn q4_0_known_block() {
        // d = 0.5 (f16 0x3800); qs[j] = j | (15 - j) << 4 → element j = 0.5·(j − 8),
        // element j + 16 = 0.5·(7 − j).
        let mut b = vec![0x00, 0x38];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(y[j + 16], 0.5 * (7.0 - j as f32));
        }
        // Quantizing those values back gives the same block: max magnitude is −4 → d = 0.5.
        let mut q = vec![0u8; BLOCK];
        quantize(&y, &mut q);
        assert_eq!(q, b);
    }

    #[test]
    fn q4_0_round_trip_error() {
        // Levels are d·(−8 … 7) with d = max/−8, so every value is within d/2 of a level except
        // at the clamped end (−max maps to level 7·d, one full step away). Bound: |d|, plus the
        // f16 rounding of d (relative 2^-11, over up to 8 steps).
        round_trip(DType::Q4_0, 7, |x, y| {
            let d = max_by_abs(x).abs() / 8.0;
            max_abs_diff(x, y) <= d * 1.005 + 1e-6
        });
    }
}
