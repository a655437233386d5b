//! AVX-512 VNNI kernels for the 32-weight block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), checked
//! against the scalar references by `dot_tests::avx512_matches_scalar`.
//!
//! Two blocks go through one 512-bit register: their 64 weight levels as unsigned bytes against
//! the 64 activation bytes, summed by one `vpdpbusd` (u8 × i8, four products summed into each
//! i32 lane; lanes 0..8 are block 0, 8..16 block 1). That replaces AVX2's
//! `maddubs` + `madd` per block and halves the instructions per block.
//!
//! `vpdpbusd` needs unsigned weights. The offset formats (Q4_1, Q5_1) store levels 0..31
//! already. The signed formats store q − c (c = 8, 16, and 128 for Q8_0 after flipping the sign
//! bit), so the kernel dots the unsigned levels and subtracts c·Σ a, which a second `vpdpbusd`
//! against a vector of c computes: Σ q·a = Σ (q + c)·a − c·Σ a, all exact in i32.
//!
//! One accumulator per row: its low half sums the even blocks and its high half the odd ones,
//! in block order, which are exactly the two chains of the AVX2 kernels, with the same products
//! and additions: the AVX-512 and AVX2 kernels give the same bits (`avx512_matches_avx2`), so
//! results do not depend on which of the two a CPU has. The order of operations for an
//! activation row never depends on how many rows are dotted at once either.

use super::x86::PREFETCH;
use crate::DType;
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = not yet probed, 1 = no, 2 = present.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Whether the CPU has AVX-512 F/BW/VL with VNNI (and the AVX2, FMA and F16C the helpers use).
/// `FORGE_CPU_AVX512=0` turns these kernels off (the AVX2 ones run), to compare the two or to
/// avoid AVX-512 on CPUs that lower their clock for it.
pub(super) fn available() -> bool {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let off = std::env::var("FORGE_CPU_AVX512").is_ok_and(|v| v == "0");
            let ok = !off
                && super::x86::available()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            LEVEL.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
            ok
        }
        l => l == 2,
    }
}

/// The VNNI dot of one weight row with R activation rows, for the 32-block formats; `None` for
/// other formats or when the CPU lacks the features. `scales` are the rows' `act_scales`.
/// Lengths were checked by the caller.
pub(super) fn vec_dot_rows<const R: usize>(weight: DType, w: &[u8], acts: [&[u8]; R], scales: [&[f32]; R]) -> Option<[f32; R]> {
    if !available() {
        return None;
    }
    // SAFETY: `available()` checked every feature the kernels are compiled for; they index only
    // through fixed-size sub-arrays.
    Some(unsafe {
        match weight {
            DType::Q4_0 => dot_q4_0(w, acts, scales),
            DType::Q4_1 => dot_q4_1(w, acts, scales),
            DType::Q5_0 => dot_q5_0(w, acts, scales),
            DType::Q5_1 => dot_q5_1(w, acts, scales),
            DType::Q8_0 => dot_q8_0(w, acts, scales),
            _ => return None,
        }
    })
}

/// [`vec_dot_rows`] for every row of `w` (consecutive rows of `row_bytes`), giving
/// `put(row, results)`; `false` (nothing done) where `vec_dot_rows` would give `None`. The loop
/// over rows runs inside the kernel's features, so the kernel inlines into it and the per-row
/// checks and dispatch happen once per tile.
pub(super) fn vec_dot_tile<const R: usize>(weight: DType, w: &[u8], row_bytes: usize, acts: [&[u8]; R], scales: [&[f32]; R], put: &mut dyn FnMut(usize, [f32; R])) -> bool {
    if !available() {
        return false;
    }
    // SAFETY: as in `vec_dot_rows`.
    unsafe {
        match weight {
            DType::Q4_0 => tile_q4_0(w, row_bytes, acts, scales, put),
            DType::Q4_1 => tile_q4_1(w, row_bytes, acts, scales, put),
            DType::Q5_0 => tile_q5_0(w, row_bytes, acts, scales, put),
            DType::Q5_1 => tile_q5_1(w, row_bytes, acts, scales, put),
            DType::Q8_0 => tile_q8_0(w, row_bytes, acts, scales, put),
            _ => return false,
        }
    }
    true
}

/// For each format, from its pair kernel `$dotc` over activation rows already split into blocks:
/// `$dot` for one weight row, and `$tile` for consecutive rows, which splits the activation rows
/// once per tile (perf had shown that split, a non-inlined `array::map`, at ~5% of a SmolLM2
/// prefill when done per weight row).
macro_rules! entry_points {
    ($($dot:ident, $tile:ident => $dotc:ident / $ab:literal),*) => {$(
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $dot<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
            $dotc(w, a.map(|r| r.as_chunks::<$ab>().0), sc)
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $tile<const R: usize>(w: &[u8], row_bytes: usize, a: [&[u8]; R], sc: [&[f32]; R], put: &mut dyn FnMut(usize, [f32; R])) {
            let ab = a.map(|r| r.as_chunks::<$ab>().0);
            for (i, wr) in w.chunks_exact(row_bytes).enumerate() {
                put(i, $dotc(wr, ab, sc));
            }
        }
    )*};
}
entry_points!(
    dot_q4_0, tile_q4_0 => pairs_q4_0 / 34,
    dot_q4_1, tile_q4_1 => pairs_q4_1 / 36,
    dot_q5_0, tile_q5_0 => pairs_q5_0 / 34,
    dot_q5_1, tile_q5_1 => pairs_q5_1 / 36,
    dot_q8_0, tile_q8_0 => pairs_q8_0 / 34
);

// ---- helpers -------------------------------------------------------------------------------

#[inline(always)]
fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().expect("in-bounds sub-array")
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(*arr(b, at))
}

/// 32 bytes at `at` of two blocks, as one register [a | b].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn bytes64(a: &[u8; 32], b: &[u8; 32]) -> __m512i {
    // SAFETY: reads exactly the 32 bytes of each array; `loadu` has no alignment requirement.
    unsafe {
        let lo = _mm256_loadu_si256(a.as_ptr().cast());
        let hi = _mm256_loadu_si256(b.as_ptr().cast());
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    }
}

/// Two blocks' 16 bytes of nibbles → 64 levels: [a low, a high, b low, b high], the element
/// order of the activation blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles64(a: &[u8; 16], b: &[u8; 16]) -> __m512i {
    // SAFETY: reads exactly the 16 bytes of each array.
    let (a, b) = unsafe { (_mm_loadu_si128(a.as_ptr().cast()), _mm_loadu_si128(b.as_ptr().cast())) };
    let t = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(a)),
        _mm256_broadcastsi128_si256(b),
        1,
    );
    // The copies in 128-bit lanes 1 and 3 shift right by 4 to bring the high nibbles down.
    let shift = _mm512_set_epi64(4 << 48 | 4 << 32 | 4 << 16 | 4, 4 << 48 | 4 << 32 | 4 << 16 | 4, 0, 0, 4 << 48 | 4 << 32 | 4 << 16 | 4, 4 << 48 | 4 << 32 | 4 << 16 | 4, 0, 0);
    _mm512_and_si512(_mm512_srlv_epi16(t, shift), _mm512_set1_epi8(0xF))
}

/// The fifth bit of two Q5 blocks (`qh` of each, 32 bits) added to their nibble levels.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn fifth_bit(levels: __m512i, qh_a: &[u8; 4], qh_b: &[u8; 4]) -> __m512i {
    let k = u32::from_le_bytes(*qh_a) as u64 | (u32::from_le_bytes(*qh_b) as u64) << 32;
    _mm512_or_si512(levels, _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10)))
}

/// The weight scales of blocks a and b as f32: [d, m, d', m'] (m is garbage for the formats
/// without one, and never used for them).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn weight_scales(xa: &[u8], xb: &[u8]) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi64_si128((u32_at(xa, 0) as u64 | (u32_at(xb, 0) as u64) << 32) as i64))
}

/// For a pair whose weight scales are `wv` and activation scales `av` ([d_a, s, d_a', s'], zero
/// for a missing block b): `[d_w·d_a × 8 | d_w'·d_a' × 8]` for the integer sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_scales(wv: __m128, av: __m128) -> __m512 {
    let p = _mm_mul_ps(wv, av);
    let idx = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(p))
}



/// Runs the pair kernel over the blocks of `$w` against the rows `$a`: `$levels` unpacks two
/// weight blocks `$x0`, `$x1` into 64 unsigned levels; `$c` is the signed formats' level offset
/// (0 for the offset formats, whose m·s terms are then added); activation levels start at byte
/// `$aq` of their `$ab`-byte blocks.
macro_rules! vnni_dot {
    ($w:expr, $a:expr, $sc:expr, $wb:literal, $ab:literal, $aq:literal, $c:expr, |$x0:ident, $x1:ident| $levels:expr) => {{
        let (wb, _) = $w.as_chunks::<$wb>();
        let ab: [&[[u8; $ab]]; R] = $a;
        let sc: [&[f32]; R] = $sc;
        let c: u8 = $c;
        let n = wb.len();
        // Lanes 0..8 accumulate the even blocks and lanes 8..16 the odd ones, in block order:
        // exactly the AVX2 kernels' two chains, so the two give the same bits.
        let mut acc = [_mm512_setzero_ps(); R];
        let mut ms = [_mm_setzero_ps(); R];
        let mut i = 0;
        while i < n {
            // Blocks i and i + 1, or block i alone (the last of an odd count; its partner's
            // scales are zero, which adds exact zeros to the odd lanes).
            let whole = i + 1 < n;
            let j = if whole { i + 1 } else { i };
            let q = {
                let ($x0, $x1) = (&wb[i], &wb[j]);
                $levels
            };
            let wv = weight_scales(&wb[i], &wb[j]);
            // Weights stream from memory once per matvec; asking for the bytes `PREFETCH`
            // ahead (past this row's end too: rows are contiguous) keeps more loads in flight
            // than the hardware prefetcher does alone. Only for a few rows (decode): with 8
            // (prefill) the weights come from cache.
            if R < 4 {
                _mm_prefetch::<_MM_HINT_T0>(wb[i].as_ptr().wrapping_add(PREFETCH).cast());
            }
            for r in 0..R {
                let (ya, yb) = (&ab[r][i], &ab[r][j]);
                let y = bytes64(arr(ya, $aq), arr(yb, $aq));
                let mut s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y);
                if c != 0 {
                    let cy = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(c as i8), y);
                    s = _mm512_sub_epi32(s, cy);
                }
                let av = if whole {
                    // SAFETY: reads the 4 floats at 2i..2i + 4, in bounds by the slice.
                    unsafe { _mm_loadu_ps(sc[r][2 * i..2 * i + 4].as_ptr()) }
                } else {
                    _mm_set_ps(0.0, 0.0, sc[r][2 * i + 1], sc[r][2 * i])
                };
                let d = pair_scales(wv, av);
                acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[r]);
                if c == 0 {
                    // lanes 1 and 3: m·s of blocks i and i + 1, each into its own chain
                    ms[r] = _mm_fmadd_ps(wv, av, ms[r]);
                }
            }
            i += 2;
        }
        let mut out = [0.0f32; R];
        for r in 0..R {
            let even_plus_odd = _mm256_add_ps(_mm512_castps512_ps256(acc[r]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1)));
            out[r] = super::x86::hsum(even_plus_odd);
            if c == 0 {
                let t = _mm_add_ps(ms[r], _mm_movehl_ps(ms[r], ms[r]));
                out[r] += _mm_cvtss_f32(_mm_movehdup_ps(t));
            }
        }
        out
    }};
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pairs_q8_0<const R: usize>(w: &[u8], a: [&[[u8; 34]]; R], sc: [&[f32]; R]) -> [f32; R] {
    // Flipping the sign bit maps q ∈ −128..128 to q + 128 as u8.
    vnni_dot!(w, a, sc, 34, 34, 2, 128, |x0, x1| _mm512_xor_si512(bytes64(arr(x0, 2), arr(x1, 2)), _mm512_set1_epi8(-128)))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pairs_q4_0<const R: usize>(w: &[u8], a: [&[[u8; 34]]; R], sc: [&[f32]; R]) -> [f32; R] {
    vnni_dot!(w, a, sc, 18, 34, 2, 8, |x0, x1| nibbles64(arr(x0, 2), arr(x1, 2)))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pairs_q5_0<const R: usize>(w: &[u8], a: [&[[u8; 34]]; R], sc: [&[f32]; R]) -> [f32; R] {
    vnni_dot!(w, a, sc, 22, 34, 2, 16, |x0, x1| fifth_bit(nibbles64(arr(x0, 6), arr(x1, 6)), arr(x0, 2), arr(x1, 2)))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pairs_q4_1<const R: usize>(w: &[u8], a: [&[[u8; 36]]; R], sc: [&[f32]; R]) -> [f32; R] {
    vnni_dot!(w, a, sc, 20, 36, 4, 0, |x0, x1| nibbles64(arr(x0, 4), arr(x1, 4)))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pairs_q5_1<const R: usize>(w: &[u8], a: [&[[u8; 36]]; R], sc: [&[f32]; R]) -> [f32; R] {
    vnni_dot!(w, a, sc, 24, 36, 4, 0, |x0, x1| fifth_bit(nibbles64(arr(x0, 8), arr(x1, 8)), arr(x0, 4), arr(x1, 4)))
}
