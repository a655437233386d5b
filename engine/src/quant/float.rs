//! Plain float storage: F32, F16 (IEEE half) and BF16, little-endian.
//!
//! The conversions mirror ggml's portable ones (`ggml_compute_fp16_to_fp32`,
//! `ggml_compute_fp32_to_fp16`, `ggml_compute_fp32_to_bf16` in ggml-impl.h): exact widening,
//! round-to-nearest-even narrowing, NaN kept quiet. Activations for these weight types are plain
//! f32 rows (llama.cpp would convert to f16 for F16 weights; we keep f32, which is more exact).

use crate::DType;

/// IEEE half → f32, exact for every input (ggml's bit-twiddling version, no table, no branch
/// on the hot path).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    let exp_offset: u32 = 0xE0 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    let magic_mask: u32 = 126 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let denormalized_cutoff: u32 = 1 << 27;
    let bits = if two_w < denormalized_cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// f32 → IEEE half, round-to-nearest-even; overflow gives ±inf, NaN gives 0x7E00 (as ggml).
#[inline]
pub(crate) fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 → bf16, round-to-nearest-even; NaN is truncated and forced quiet (as ggml).
#[inline]
pub(crate) fn f32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// Reads the little-endian f16 at `b[off..off + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
}

/// Writes `v` as a little-endian f16 at `b[off..off + 2]`.
#[inline]
pub(crate) fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
}

/// Iterates a little-endian f32 byte row as values (no alignment needed).
#[inline(always)]
pub(crate) fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn u16s(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
}

pub(super) fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) {
    match dtype {
        DType::F32 => dst.iter_mut().zip(f32s(src)).for_each(|(d, v)| *d = v),
        DType::F16 => dst
            .iter_mut()
            .zip(u16s(src))
            .for_each(|(d, h)| *d = f16_to_f32(h)),
        DType::BF16 => dst
            .iter_mut()
            .zip(u16s(src))
            .for_each(|(d, h)| *d = bf16_to_f32(h)),
        _ => unreachable!("{dtype} is not a float type"),
    }
}

pub(super) fn quantize(dtype: DType, src: &[f32], dst: &mut [u8]) {
    match dtype {
        DType::F32 => dst
            .chunks_exact_mut(4)
            .zip(src)
            .for_each(|(d, v)| d.copy_from_slice(&v.to_le_bytes())),
        DType::F16 => dst
            .chunks_exact_mut(2)
            .zip(src)
            .for_each(|(d, &v)| d.copy_from_slice(&f32_to_f16(v).to_le_bytes())),
        DType::BF16 => dst
            .chunks_exact_mut(2)
            .zip(src)
            .for_each(|(d, &v)| d.copy_from_slice(&f32_to_bf16(v).to_le_bytes())),
        _ => unreachable!("{dtype} is not a float type"),
    }
}

/// Scalar reference dot of a float weight row with an f32 activation row. Eight partial sums
/// (one per SIMD lane on most machines) so the compiler can vectorise it and so its rounding
/// resembles the SIMD path's.
pub(super) fn vec_dot(dtype: DType, w: &[u8], act: &[u8]) -> f32 {
    fn lanes(mut it: impl Iterator<Item = (f32, f32)>) -> f32 {
        let mut acc = [0.0f32; 8];
        'outer: loop {
            for a in acc.iter_mut() {
                match it.next() {
                    Some((x, y)) => *a += x * y,
                    None => break 'outer,
                }
            }
        }
        acc.iter().sum()
    }
    let a = f32s(act);
    match dtype {
        DType::F32 => lanes(f32s(w).zip(a)),
        DType::F16 => lanes(u16s(w).map(f16_to_f32).zip(a)),
        DType::BF16 => lanes(u16s(w).map(bf16_to_f32).zip(a)),
        _ => unreachable!("{dtype} is not a float type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversions_match_known_bits() {
        // 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF (max), 2^-24 = 0x0001 (smallest subnormal).
        for (bits, v) in [
            (0x3C00u16, 1.0f32),
            (0xC000, -2.0),
            (0x7BFF, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), v, "{bits:#06x}");
            assert_eq!(f32_to_f16(v), bits, "{v}");
        }
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7C00);
        assert_eq!(f32_to_f16(1e6), 0x7C00, "overflow rounds to inf");
        assert!(f16_to_f32(0x7E00).is_nan());
        // 1 + 2^-11 is exactly halfway between 1.0 and the next half (1 + 2^-10): ties to even.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3C00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3C02);
    }

    #[test]
    fn f16_round_trips_every_finite_half() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(v), h, "{h:#06x}");
            assert_eq!(half::f16::from_bits(h).to_f32(), v, "{h:#06x}");
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3F80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        assert_eq!(bf16_to_f32(0xC040), -3.0);
    }
}
