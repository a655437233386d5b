//! Q6_K: 256 weights per 210-byte super-block (ggml `block_q6_K`):
//! `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Sixteen sub-blocks of 16, each
//! with an 8-bit signed scale; w = d·sc·(q − 32) with q 6 bits. Each half h (128 weights) uses
//! `ql[64h..]` and `qh[32h..]`: for l < 32, weights l, l+32, l+64, l+96 take the low nibble of
//! `ql[l]`, low nibble of `ql[l+32]`, high nibble of `ql[l]`, high nibble of `ql[l+32]`, and bits
//! 0-1, 2-3, 4-5, 6-7 of `qh[l]` as their top two bits.

use super::float::{f16_at, put_f16};
use super::kquant::{QK_K, make_qx_quants, nearest_int};
use super::q8_act::{Q8_K_BLOCK, q8_k_parts};

pub(super) const BLOCK: usize = 210;

/// The 256 levels (0..64) of one block, in weight order.
#[inline(always)]
fn levels(b: &[u8]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (
            &b[64 * h..64 * (h + 1)],
            &b[128 + 32 * h..128 + 32 * (h + 1)],
        );
        let q = &mut q[128 * h..128 * (h + 1)];
        for l in 0..32 {
            q[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            q[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

/// ggml `dequantize_row_q6_K`.
pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 208);
        let q = levels(b);
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * b[192 + e / 16] as i8 as f32 * (q[e] as i32 - 32) as f32;
        }
    }
}

/// ggml `quantize_row_q6_K_ref` (no importance matrix).
pub(super) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(BLOCK)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let scale = make_qx_quants(
                32,
                &x[16 * ib..16 * (ib + 1)],
                &mut l[16 * ib..16 * (ib + 1)],
            );
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < 1e-15 {
            b.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        put_f16(b, 208, 1.0 / iscale);
        for ib in 0..16 {
            b[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let d_all = f16_at(b, 208);
        for j in 0..16 {
            let d = d_all * b[192 + j] as i8 as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        let l = l.map(|v| v as u8);
        for h in 0..2 {
            let (lh, ql, qh) = (&l[128 * h..], 64 * h, 128 + 32 * h);
            for i in 0..32 {
                b[ql + i] = (lh[i] & 0xF) | ((lh[i + 64] & 0xF) << 4);
                b[ql + i + 32] = (lh[i + 32] & 0xF) | ((lh[i + 96] & 0xF) << 4);
                b[qh + i] = (lh[i] >> 4)
                    | ((lh[i + 32] >> 4) << 2)
                    | ((lh[i + 64] >> 4) << 4)
                    | ((lh[i + 96] >> 4) << 6);
            }
        }
    }
}

/// Scalar reference dot with a Q8_K row: d·d_a·Σ_g sc_g·Σ (q − 32)·q_a over 16-weight groups.
pub(super) fn vec_dot(w: &[u8], act: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(BLOCK).zip(act.chunks_exact(Q8_K_BLOCK)) {
        let (yd, q8, _) = q8_k_parts(y);
        let q = levels(x);
        let mut sumi = 0i32;
        for g in 0..16 {
            let dot: i32 = (16 * g..16 * (g + 1))
                .map(|e| (q[e] as i32 - 32) * q8[e] as i8 as i32)
                .sum();
            sumi += x[192 + g] as i8 as i32 * dot;
        }
        sumf += f16_at(x, 208) * yd * sumi as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use crate::quant::testutil::*;

    #[test]
    fn q6_k_known_block() {
        // ql[i] = i, qh[i] = 29·i (mod 256), scales[g] = g − 8, d = 0.25 (0x3400).
        let ql: Vec<u8> = (0..128u8).collect();
        let qh: Vec<u8> = (0..64u32).map(|i| (29 * i) as u8).collect();
        let mut b = ql.clone();
        b.extend(&qh);
        b.extend((0..16i8).map(|g| (g - 8) as u8));
        b.extend([0x00, 0x34]);
        let mut y = vec![0.0f32; QK_K];
        dequantize(&b, &mut y);
        for (e, &v) in y.iter().enumerate() {
            let (h, r) = (e / 128, e % 128);
            let (l, g) = (r % 32, r / 32);
            let byte = ql[64 * h + l + if g % 2 == 1 { 32 } else { 0 }];
            let low = if g < 2 { byte & 0xF } else { byte >> 4 };
            let high = (qh[32 * h + l] >> (2 * g)) & 3;
            let q = (low | (high << 4)) as i32 - 32;
            assert_eq!(
                v,
                0.25 * ((e / 16) as i32 - 8) as f32 * q as f32,
                "element {e}"
            );
        }
    }

    #[test]
    fn q6_k_round_trip_error() {
        // Symmetric 6-bit levels per 16 weights: step ≈ 2/63 (for [−1, 1] data), noise ≈
        // step/√12 ≈ 0.009; 8-bit scales cost little. Allow 0.013.
        round_trip(DType::Q6K, 3, |x, y| rmse(x, y) <= 0.013);
    }

    #[test]
    fn q6_k_degenerate_blocks() {
        degenerate_blocks(DType::Q6K);
    }
}
