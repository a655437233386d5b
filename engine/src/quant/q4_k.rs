//! Q4_K: 256 weights per 144-byte super-block (ggml `block_q4_K`):
//! `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Eight sub-blocks of 32 each have a 6-bit
//! scale and min (packed, see `kquant::get_scale_min_k4`); w = d·sc·q − dmin·m.
//! `qs` is four 32-byte chunks; chunk c holds sub-block 2c in its low nibbles and 2c + 1 in its
//! high nibbles. Dot products take Q8_K activations.

use super::float::f16_at;
use super::kquant::{QK_K, get_scale_min_k4, quantize_scales_mins};
use super::q8_act::{Q8_K_BLOCK, q8_k_parts};

pub(super) const BLOCK: usize = 144;

/// ggml `dequantize_row_q4_K`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        for c in 0..4 {
            let q = &b[16 + 32 * c..16 + 32 * (c + 1)];
            let (sc1, m1) = get_scale_min_k4(2 * c, scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * c..64 * (c + 1)];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// ggml `quantize_row_q4_K_ref` (no importance matrix).
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BLOCK)) {
        let l = quantize_scales_mins(x, 15, -1.0, 0.1, 20, &mut b[..16]);
        for c in 0..4 {
            for i in 0..32 {
                b[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + i + 32] << 4);
            }
        }
    }
}

/// Scalar reference dot with a Q8_K row: per super-block
/// d_a·(d·Σ_j sc_j·Σ q·q_a − dmin·Σ_j m_j·Σ q_a), the last sums coming from the Q8_K bsums.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(BLOCK).zip(act.chunks_exact(Q8_K_BLOCK)) {
        let (yd, q8, bsums) = q8_k_parts(y);
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &x[4..16]);
            let q4 = &x[16 + 32 * (j / 2)..16 + 32 * (j / 2 + 1)];
            let shift = 4 * (j % 2);
            let dot: i32 = (0..32)
                .map(|l| ((q4[l] >> shift) & 0xF) as i32 * q8[32 * j + l] as i8 as i32)
                .sum();
            sumi += sc as i32 * dot;
            let bs = i16::from_le_bytes([bsums[4 * j], bsums[4 * j + 1]]) as i32
                + i16::from_le_bytes([bsums[4 * j + 2], bsums[4 * j + 3]]) as i32;
            summ += m as i32 * bs;
        }
        sumf += f16_at(x, 0) * yd * sumi as f32 - f16_at(x, 2) * yd * summ as f32;
    }
    sumf
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::DType;
    use crate::quant::testutil::*;

    /// 6-bit scales and mins chosen so every packing path and top-bit pair is exercised.
    pub(crate) const SC: [u8; 8] = [1, 2, 3, 4, 17, 33, 49, 63];
    pub(crate) const M: [u8; 8] = [0, 1, 2, 3, 16, 32, 48, 5];
    /// `SC`/`M` packed by hand as ggml-common.h describes (see `get_scale_min_k4`).
    pub(crate) const PACKED: [u8; 12] = [
        0x41, 0x82, 0xC3, 0xC4, 0x40, 0x81, 0xC2, 0x03, 0x01, 0x01, 0x01, 0x5F,
    ];

    #[test]
    fn q4_k_known_block() {
        // d = 1.0 (0x3C00), dmin = 0.5 (0x3800); qs[i] = (i % 16) | (15 − i % 16) << 4.
        let mut b = vec![0x00, 0x3C, 0x00, 0x38];
        b.extend(PACKED);
        b.extend((0..128u8).map(|i| (i % 16) | ((15 - i % 16) << 4)));
        let mut y = vec![0.0f32; QK_K];
        dequantize(&b, &mut y);
        for (e, &v) in y.iter().enumerate() {
            let (c, r) = (e / 64, e % 64);
            let (q, sub) = if r < 32 {
                (r % 16, 2 * c)
            } else {
                (15 - (r - 32) % 16, 2 * c + 1)
            };
            assert_eq!(
                v,
                SC[sub] as f32 * q as f32 - 0.5 * M[sub] as f32,
                "element {e}"
            );
        }
    }

    #[test]
    fn q4_k_round_trip_error() {
        // Asymmetric 4-bit levels per 32 weights: uniform noise in [−1, 1] quantized with a step
        // of about 2/15 has RMS error step/√12 ≈ 0.038; 6-bit scales and the error-minimising
        // (sometimes clipping) scale search add a little. Allow 0.05.
        round_trip(DType::Q4K, 3, |x, y| rmse(x, y) <= 0.05);
    }

    #[test]
    fn q4_k_degenerate_blocks() {
        degenerate_blocks(DType::Q4K);
    }
}
