//! Q5_0: 32 weights per 22-byte block (ggml `block_q5_0`):
//! `d: f16`, `qh: u32` (little-endian; bit j is the fifth bit of element j), then `qs: [u8; 16]`;
//! element j < 16 has its low four bits in the low nibble of `qs[j]`, element j + 16 in the high
//! nibble; w = d · (q − 16).
//! Dot products take Q8_0 activations (`block_q8_0`, see `q8_0.rs`), as Q4_0 does.

use super::float::{f16_at, put_f16};

pub(super) const QK: usize = 32;
pub(super) const BLOCK: usize = 22;

/// The 5-bit levels (0..32) of a Q5_0/Q5_1 block from its `qh` word and 16 bytes of nibbles.
pub(super) fn levels(qh: u32, qs: &[u8]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for (j, &b) in qs[..16].iter().enumerate() {
        q[j] = (b & 0x0F) | (((qh >> j) & 1) << 4) as u8;
        q[j + 16] = (b >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
    }
    q
}

/// Packs 5-bit levels into `qh` (returned) and the 16 bytes of nibbles `qs`.
pub(super) fn pack(q: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        qh |= (((q[j] & 0x10) >> 4) as u32) << j;
        qh |= (((q[j + 16] & 0x10) >> 4) as u32) << (j + 16);
    }
    qh
}

pub(super) fn qh_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// ggml `dequantize_row_q5_0`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (y, q) in y.iter_mut().zip(levels(qh_at(b, 2), &b[6..])) {
            *y = (q as i32 - 16) as f32 * d;
        }
    }
}

/// ggml `quantize_row_q5_0_ref`: d = (the value of largest magnitude) / −16.
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            // `(int8_t)(x + 16.5f)` truncates toward zero; the value is in [0.5, 32.5].
            *q = ((v * id + 16.5) as i8).min(31) as u8;
        }
        let qh = pack(&q, &mut b[6..]);
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

/// ggml `ggml_vec_dot_q5_0_q8_0_generic`: Σ_blocks (d_w · d_a) · Σ (q_w − 16) · q_a.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(BLOCK)
        .zip(act.chunks_exact(super::q8_0::BLOCK))
    {
        let sumi: i32 = levels(qh_at(x, 2), &x[6..])
            .iter()
            .zip(&y[2..])
            .map(|(&q, &a)| (q as i32 - 16) * a as i8 as i32)
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
    fn q5_0_known_block() {
        // d = 0.25 (f16 0x3400); level of element j is 31 − j, so the fifth bits are set for
        // j < 16 (qh = 0x0000FFFF), nibbles 15 − j (low) and 15 − j (high, j + 16 → 15 − j).
        // Element j = 0.25·(15 − j).
        let mut b = vec![0x00, 0x34, 0xFF, 0xFF, 0x00, 0x00];
        b.extend((0..16u8).map(|j| (15 - j) | ((15 - j) << 4)));
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        for (j, &v) in y.iter().enumerate() {
            assert_eq!(v, 0.25 * (15.0 - j as f32), "element {j}");
        }
        // The largest magnitude is −4 (element 31) → d = 0.25, 1/d = 4: element j gives
        // 4·0.25·(15 − j) + 16.5 = 31.5 − j, truncated to 31 − j, so the block comes back.
        let mut q = vec![0u8; BLOCK];
        quantize(&y, &mut q);
        assert_eq!(q, b);
    }

    #[test]
    fn q5_0_clamps_the_opposite_extreme() {
        // The first value of largest magnitude sets the sign: max = +1 → d = −1/16, 1/d = −16.
        // +1 → 0.5 → level 0; −1 → 32.5 → 32, clamped to 31 (w = −15/16); 0 → level 16.
        let mut x = [0.0f32; 32];
        x[3] = 1.0;
        x[20] = -1.0;
        let mut b = vec![0u8; BLOCK];
        quantize(&x, &mut b);
        assert_eq!(levels(qh_at(&b, 2), &b[6..])[3], 0);
        assert_eq!(levels(qh_at(&b, 2), &b[6..])[20], 31);
        let mut y = [0.0f32; 32];
        dequantize(&b, &mut y);
        assert_eq!((y[3], y[20], y[0]), (1.0, -0.9375, 0.0));
    }

    #[test]
    fn q5_0_round_trip_error() {
        // Levels are d·(−16 … 15) with d = max/−16: every value is within d/2 of a level except
        // at the clamped end (−max maps to 15·d, one full step away). Bound: |d|, plus the f16
        // rounding of d (relative 2^-11, over up to 16 steps).
        round_trip(DType::Q5_0, 7, |x, y| {
            let d = max_by_abs(x).abs() / 16.0;
            max_abs_diff(x, y) <= d * 1.01 + 1e-6
        });
    }
}
