//! Q8_0: 32 weights per 34-byte block (ggml `block_q8_0`): `d: f16` then `qs: [i8; 32]`;
//! w = d · q. The same block is llama.cpp's activation format for Q4_0 and Q8_0 weights.

use super::float::{f16_at, put_f16};

pub(super) const QK: usize = 32;
pub(super) const BLOCK: usize = 34;

/// ggml `dequantize_row_q8_0`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..]) {
            *y = q as i8 as f32 * d;
        }
    }
}

/// ggml `quantize_row_q8_0_ref`: d = amax / 127, q = roundf(x / d) (ties away from zero).
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK)) {
        let amax = x
            .iter()
            .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for (q, &v) in b[2..].iter_mut().zip(x) {
            *q = (v * id).round() as i8 as u8;
        }
    }
}

/// ggml `ggml_vec_dot_q8_0_q8_0_generic`.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(BLOCK).zip(act.chunks_exact(BLOCK)) {
        let sumi: i32 = x[2..]
            .iter()
            .zip(&y[2..])
            .map(|(&a, &b)| a as i8 as i32 * b as i8 as i32)
            .sum();
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
    fn q8_0_known_block() {
        // d = 2^-7 (f16 0x2000); qs[j] = j·8 − 127 as i8 for j < 32 (−127 … 121).
        let mut b = vec![0x00, 0x20];
        b.extend((0..32i32).map(|j| (j * 8 - 127) as i8 as u8));
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        for (j, &v) in y.iter().enumerate() {
            assert_eq!(v, (j as f32 * 8.0 - 127.0) / 128.0);
        }
        // amax = 127/128 → d = 1/128 exactly, so quantizing gives the same block back.
        let mut q = vec![0u8; BLOCK];
        quantize(&y, &mut q);
        assert_eq!(q, b);
    }

    #[test]
    fn q8_0_round_trip_error() {
        // Rounding to a step of d = amax/127 costs at most d/2, plus the f16 rounding of d
        // (relative 2^-11, times up to 127 steps).
        round_trip(DType::Q8_0, 7, |x, y| {
            let amax = max_by_abs(x).abs();
            max_abs_diff(x, y) <= amax / 254.0 + amax * 1e-3 + 1e-7
        });
    }
}
