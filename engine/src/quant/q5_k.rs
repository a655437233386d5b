//! Q5_K: 256 weights per 176-byte super-block (ggml `block_q5_K`):
//! `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`. As Q4_K, plus a fifth
//! bit: weight l of sub-block j (0..8) adds 16 when bit j of `qh[l]` is set; w = d·sc·q − dmin·m.

use super::float::f16_at;
use super::kquant::{QK_K, get_scale_min_k4, quantize_scales_mins};
use super::q8_act::{Q8_K_BLOCK, q8_k_parts};

pub(super) const BLOCK: usize = 176;

/// ggml `dequantize_row_q5_K`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b, 0), f16_at(b, 2));
        let (scales, qh) = (&b[4..16], &b[16..48]);
        for c in 0..4 {
            let ql = &b[48 + 32 * c..48 + 32 * (c + 1)];
            let (sc1, m1) = get_scale_min_k4(2 * c, scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let y = &mut y[64 * c..64 * (c + 1)];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// ggml `quantize_row_q5_K_ref` (no importance matrix).
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BLOCK)) {
        let l = quantize_scales_mins(x, 31, -0.5, 0.1, 15, &mut b[..16]);
        let (qh, ql) = b[16..].split_at_mut(32);
        qh.fill(0);
        for c in 0..4 {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for j in 0..32 {
                let mut l1 = l[64 * c + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[64 * c + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * c + j] = l1 | (l2 << 4);
            }
        }
    }
}

/// Scalar reference dot with a Q8_K row (as Q4_K, with the fifth bit).
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(BLOCK).zip(act.chunks_exact(Q8_K_BLOCK)) {
        let (yd, q8, bsums) = q8_k_parts(y);
        let qh = &x[16..48];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &x[4..16]);
            let ql = &x[48 + 32 * (j / 2)..48 + 32 * (j / 2 + 1)];
            let shift = 4 * (j % 2);
            let dot: i32 = (0..32)
                .map(|l| {
                    (((ql[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4)) as i32
                        * q8[32 * j + l] as i8 as i32
                })
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
mod tests {
    use super::*;
    use crate::DType;
    use crate::quant::q4_k::tests::{M, PACKED, SC};
    use crate::quant::testutil::*;

    #[test]
    fn q5_k_known_block() {
        // d = 1.0, dmin = 0.5, scales as in the Q4_K test; qh[l] = 37·l (mod 256);
        // qs[i] = (i % 16) | (15 − i % 16) << 4.
        let mut b = vec![0x00, 0x3C, 0x00, 0x38];
        b.extend(PACKED);
        let qh: Vec<u8> = (0..32u32).map(|l| (37 * l) as u8).collect();
        b.extend(&qh);
        b.extend((0..128u8).map(|i| (i % 16) | ((15 - i % 16) << 4)));
        let mut y = vec![0.0f32; QK_K];
        dequantize(&b, &mut y);
        for (e, &v) in y.iter().enumerate() {
            let (c, r) = (e / 64, e % 64);
            let (low, sub, l) = if r < 32 {
                (r % 16, 2 * c, r)
            } else {
                (15 - (r - 32) % 16, 2 * c + 1, r - 32)
            };
            let q = low + 16 * ((qh[l] as usize >> sub) & 1);
            assert_eq!(
                v,
                SC[sub] as f32 * q as f32 - 0.5 * M[sub] as f32,
                "element {e}"
            );
        }
    }

    #[test]
    fn q5_k_round_trip_error() {
        // As Q4_K with 31 levels: step ≈ 2/31, noise ≈ step/√12 ≈ 0.019. Allow 0.025.
        round_trip(DType::Q5K, 3, |x, y| rmse(x, y) <= 0.025);
    }

    #[test]
    fn q5_k_degenerate_blocks() {
        degenerate_blocks(DType::Q5K);
    }
}
