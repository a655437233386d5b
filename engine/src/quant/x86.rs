//! AVX2 + FMA + F16C kernels for `vec_dot`, after ggml's x86 code (`ggml_vec_dot_q4_1_q8_1`
//! etc. in ggml-cpu/arch/x86/quants.c), checked against the scalar references by
//! `dot_tests::avx2_matches_scalar`.
//!
//! Idea shared by the block kernels: widen 32 weights to bytes in one 256-bit register, multiply
//! with 32 activation bytes by `maddubs` (u8 × i8 → pairs summed to i16, no overflow for these
//! ranges), sum pairs to i32 with `madd`, then scale by the block's f32 factors with one FMA.
//! Two accumulators per loop hide the FMA latency. Weight scales are f16, widened with F16C
//! once per block for all the activation rows it serves; activation scales come widened
//! already (`act_scales`), once per token rather than once per weight row. All loads are unaligned, from fixed-size arrays (`as_chunks`), so every
//! read is in bounds by construction.

use super::kquant::get_scale_min_k4;
use crate::DType;
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = not yet probed, 1 = no, 2 = AVX2 + FMA + F16C present.
static LEVEL: AtomicU8 = AtomicU8::new(0);

pub(super) fn available() -> bool {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let ok = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            LEVEL.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
            ok
        }
        l => l == 2,
    }
}

/// The AVX2 dot for `weight`, or `None` when the CPU lacks the features (`scales`: the
/// activation row's `act_scales`). Row lengths were checked by the caller; the kernels read only
/// whole blocks inside `w` and `act`.
#[cfg(test)]
pub(super) fn vec_dot(weight: DType, w: &[u8], act: &[u8], scales: &[f32]) -> Option<f32> {
    vec_dot_rows(weight, w, [act], [scales]).map(|[s]| s)
}

/// [`vec_dot`] of one weight row with R activation rows; each result equals `vec_dot` of that
/// row bit for bit. `scales` are the rows' `act_scales` (used by the 32-weight block formats).
pub(super) fn vec_dot_rows<const R: usize>(weight: DType, w: &[u8], acts: [&[u8]; R], scales: [&[f32]; R]) -> Option<[f32; R]> {
    if !available() {
        return None;
    }
    // SAFETY: the CPU supports avx2, fma and f16c (checked just above), which is all the
    // `target_feature` kernels require; they do no unchecked indexing.
    Some(unsafe {
        match weight {
            DType::F32 => acts.map(|a| dot_f32(w, a)),
            DType::F16 => acts.map(|a| dot_f16(w, a)),
            DType::BF16 => acts.map(|a| dot_bf16(w, a)),
            DType::Q4_0 => dot_q4_0(w, acts, scales),
            DType::Q4_1 => dot_q4_1(w, acts, scales),
            DType::Q5_0 => dot_q5_0(w, acts, scales),
            DType::Q5_1 => dot_q5_1(w, acts, scales),
            DType::Q8_0 => dot_q8_0(w, acts, scales),
            DType::Q4K => dot_q4_k(w, acts),
            DType::Q5K => dot_q5_k(w, acts),
            DType::Q6K => dot_q6_k(w, acts),
            DType::U32 => return None,
        }
    })
}

/// [`vec_dot_rows`] for every row of `w` (consecutive rows of `row_bytes`), giving
/// `put(row, results)`; `false` (nothing done) when the CPU lacks the features or for a float
/// weight. The loop over rows runs inside the kernels' features, so a kernel inlines into it
/// and checks and dispatch happen once per tile.
pub(super) fn vec_dot_tile<const R: usize>(weight: DType, w: &[u8], row_bytes: usize, acts: [&[u8]; R], scales: [&[f32]; R], put: &mut dyn FnMut(usize, [f32; R])) -> bool {
    if !available() {
        return false;
    }
    // SAFETY: as in `vec_dot_rows`.
    unsafe {
        match weight {
            DType::Q4_0 => tile(w, row_bytes, |x| dot_q4_0(x, acts, scales), put),
            DType::Q4_1 => tile(w, row_bytes, |x| dot_q4_1(x, acts, scales), put),
            DType::Q5_0 => tile(w, row_bytes, |x| dot_q5_0(x, acts, scales), put),
            DType::Q5_1 => tile(w, row_bytes, |x| dot_q5_1(x, acts, scales), put),
            DType::Q8_0 => tile(w, row_bytes, |x| dot_q8_0(x, acts, scales), put),
            DType::Q4K => tile(w, row_bytes, |x| dot_q4_k(x, acts), put),
            DType::Q5K => tile(w, row_bytes, |x| dot_q5_k(x, acts), put),
            DType::Q6K => tile(w, row_bytes, |x| dot_q6_k(x, acts), put),
            _ => return false,
        }
    }
    true
}

/// `put(i, dot(row i))` for the consecutive rows of `w`, compiled with the kernels' features so
/// that `dot` inlines into the loop.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile<const R: usize>(w: &[u8], row_bytes: usize, dot: impl Fn(&[u8]) -> [f32; R], put: &mut dyn FnMut(usize, [f32; R])) {
    for (i, wr) in w.chunks_exact(row_bytes).enumerate() {
        put(i, dot(wr));
    }
}

// ---- helpers -------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(b: &[u8; 32]) -> __m256i {
    // SAFETY: reads exactly the 32 bytes of `b`; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load16(b: &[u8; 16]) -> __m128i {
    // SAFETY: reads exactly the 16 bytes of `b`; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline(always)]
fn arr<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N].try_into().expect("in-bounds sub-array")
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// 16 bytes of nibbles → 32 bytes: low nibbles (elements 0..16) then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(b: &[u8; 16]) -> __m256i {
    let t = load16(b);
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(t, 4), t),
        _mm256_set1_epi8(0xF),
    )
}

/// Σ pairs of u8 × i8 as 8 × i32 (ggml `mul_sum_us8_pairs`, before the float conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_us8(ux: __m256i, sy: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_set1_epi16(1), _mm256_maddubs_epi16(ux, sy))
}

// ---- 32-weight blocks ------------------------------------------------------------------------
//
// Each kernel dots one weight row with R activation rows at once (R = 1 for a matrix-vector
// product, up to 8 for prefill and batched decode): each weight block is unpacked once, into a
// small L1-resident buffer, and serves all R rows, each of which then streams past the buffer
// with its two accumulator chains in registers. Blocks alternate between the two chains
// (hiding FMA latency) and the chains are added at the end; the order of additions for each
// activation row is the same for every R, so a row's result never depends on how many rows were
// dotted with it (prefill, decode and batches agree bit for bit).
//
// perf had shown the accumulators of a block-outer loop (R rows × 2 chains) spilled to the stack,
// each FMA a round trip through memory: the hottest instructions of a SmolLM2 prefill.

/// Weight blocks unpacked at a time: 64 blocks' levels are 2 KiB (4 KiB for the signed formats'
/// two vectors), which stay in L1 while the R activation rows stream past.
const CHUNK: usize = 64;

/// How far ahead of the block being unpacked weights are prefetched when few activation rows
/// share them (decode, where weights stream from memory). Measured on SmolLM2 decode with the
/// AVX-512 kernels (2 threads, AMD EPYC): none 135-138 tok/s, 512 B 152, 1 KiB 160-165, 2 KiB
/// 140, 4 KiB 143.
pub(super) const PREFETCH: usize = 1024;

/// Runs `$prep` (weight block → what every row needs of it) over the blocks of `$w`, a chunk at
/// a time, then `$body` (prepared block, activation block, the row's `[d, s]` scales of the block,
/// accumulator → accumulator) for each of the rows `$a` over the chunk, and `$finish` on each
/// row's two chains. Rows go past the chunk two at a time: one row's two chains alone would wait
/// on FMA latency.
macro_rules! rows_dot {
    ($w:expr, $a:expr, $sc:expr, $wb:literal, $ab:literal, $zero:expr,
     |$x:ident| $prep:expr, |$p:ident, $y:ident, $s:ident, $acc:ident| $body:expr, |$c0:ident, $c1:ident| $finish:expr) => {{
        let (wb, _) = $w.as_chunks::<$wb>();
        let ab = $a.map(|r| r.as_chunks::<$ab>().0);
        let sc: [&[f32]; R] = $sc;
        let mut acc = [[$zero; 2]; R];
        macro_rules! blk {
            ($pv:expr, $yv:expr, $sv:expr, $av:expr) => {{
                let ($p, $y, $s, $acc) = ($pv, $yv, $sv, $av);
                $body
            }};
        }
        let mut buf = [std::mem::MaybeUninit::uninit(); CHUNK];
        if R == 1 {
            // One activation row (decode): a block serves nothing else, so it is prepared and
            // used at once, with no round trip through `buf`. Same chains, same order, same bits.
            let (y0, s0) = (ab[0], sc[0].as_chunks::<2>().0);
            let [mut a0, mut a1] = acc[0];
            let mut pairs = wb.chunks_exact(2);
            for (i, xx) in (&mut pairs).enumerate() {
                _mm_prefetch::<_MM_HINT_T0>(xx[0].as_ptr().wrapping_add(PREFETCH).cast());
                let p0 = { let $x = &xx[0]; $prep };
                a0 = blk!(p0, &y0[2 * i], &s0[2 * i], a0);
                let p1 = { let $x = &xx[1]; $prep };
                a1 = blk!(p1, &y0[2 * i + 1], &s0[2 * i + 1], a1);
            }
            if let [$x] = pairs.remainder() {
                let last = wb.len() - 1;
                a0 = blk!($prep, &y0[last], &s0[last], a0);
            }
            acc[0] = [a0, a1];
        } else {
        for (c, xs) in wb.chunks(CHUNK).enumerate() {
            for (slot, $x) in buf.iter_mut().zip(xs) {
                if R < 4 {
                    _mm_prefetch::<_MM_HINT_T0>($x.as_ptr().wrapping_add(PREFETCH).cast());
                }
                slot.write($prep);
            }
            // SAFETY: the first xs.len() slots were written just above.
            let prep = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), xs.len()) };
            // `last`: the block left over when the chunk's count is odd (chain 0 takes it).
            let (base, len, last) = (c * CHUNK, xs.len(), xs.len() & !1);
            let row = |r: usize| (&ab[r][base..base + len], sc[r][2 * base..2 * (base + len)].as_chunks::<2>().0);
            let mut r = 0;
            while r + 1 < R {
                let ((y0, s0), (y1, s1)) = (row(r), row(r + 1));
                let ([mut a0, mut a1], [mut b0, mut b1]) = (acc[r], acc[r + 1]);
                for (((pp, ya), sa), (yb, sb)) in prep.chunks_exact(2).zip(y0.chunks_exact(2)).zip(s0.chunks_exact(2)).zip(y1.chunks_exact(2).zip(s1.chunks_exact(2))) {
                    a0 = blk!(pp[0], &ya[0], &sa[0], a0);
                    b0 = blk!(pp[0], &yb[0], &sb[0], b0);
                    a1 = blk!(pp[1], &ya[1], &sa[1], a1);
                    b1 = blk!(pp[1], &yb[1], &sb[1], b1);
                }
                if last < len {
                    a0 = blk!(prep[last], &y0[last], &s0[last], a0);
                    b0 = blk!(prep[last], &y1[last], &s1[last], b0);
                }
                (acc[r], acc[r + 1]) = ([a0, a1], [b0, b1]);
                r += 2;
            }
            if r < R {
                let (y0, s0) = row(r);
                let [mut a0, mut a1] = acc[r];
                for ((pp, ya), sa) in prep.chunks_exact(2).zip(y0.chunks_exact(2)).zip(s0.chunks_exact(2)) {
                    a0 = blk!(pp[0], &ya[0], &sa[0], a0);
                    a1 = blk!(pp[1], &ya[1], &sa[1], a1);
                }
                if last < len {
                    a0 = blk!(prep[last], &y0[last], &s0[last], a0);
                }
                acc[r] = [a0, a1];
            }
        }
        }
        acc.map(|[$c0, $c1]| $finish)
    }};
}

/// The f16 at the start of a block, widened.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_first(x: &[u8]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([x[0], x[1]]) as i32)))
}

/// A signed format's block (Q4_0, Q5_0, Q8_0: f16 scale first) as what every activation row
/// needs of it: |q| as u8, the levels q (whose signs move onto the activations) and d, broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_levels(x: &[u8], qx: __m256i) -> (__m256i, __m256i, __m256) {
    (_mm256_sign_epi8(qx, qx), qx, _mm256_set1_ps(f16_first(x)))
}

/// One signed-format block, prepared by [`signed_levels`], against a Q8_0 activation block with
/// scale `da`: acc + d_w·d_a·Σ q_w·q_a (ggml's `mul_sum_i8_pairs_float`: x's sign moved onto y).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn i8_block((ux, qx, dw): (__m256i, __m256i, __m256), y: &[u8; 34], da: &f32, acc: __m256) -> __m256 {
    let p = _mm256_cvtepi32_ps(dot_us8(ux, _mm256_sign_epi8(load32(arr(y, 2)), qx)));
    _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(da)), p, acc)
}

/// [`rows_dot`] for the signed formats (Q8_0 activations), from the block's levels as i8.
macro_rules! signed_rows_dot {
    ($w:expr, $a:expr, $sc:expr, $wb:literal, |$x:ident| $levels:expr) => {
        rows_dot!($w, $a, $sc, $wb, 34, _mm256_setzero_ps(),
            |$x| signed_levels($x, $levels),
            |q, y, s, acc| i8_block(q, y, &s[0], acc),
            |a0, a1| hsum(_mm256_add_ps(a0, a1)))
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
    signed_rows_dot!(w, a, sc, 34, |x| load32(arr(x, 2)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_0<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
    signed_rows_dot!(w, a, sc, 18, |x| _mm256_sub_epi8(nibbles(arr(x, 2)), _mm256_set1_epi8(8)))
}

/// 32 bits (a Q5 block's `qh`) → 32 bytes, byte i 0xFF where bit i is set (ggml
/// `bytes_from_bits_32`): byte i takes qh's byte i / 8, ORed with a mask that has every bit but
/// bit i % 8 set, so it is all ones exactly when that bit is.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bits32(qh: &[u8; 4]) -> __m256i {
    let spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(*qh)), spread);
    let others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1))
}

/// An offset format's block (Q4_1, Q5_1: scales d, m in its first 4 bytes), prepared as its
/// levels `qx` (u8), d broadcast and m, against a Q8_1 activation block with scales `[d_a, s]`:
/// Σ w·a = d_w·d_a·Σ q_w·q_a + m·s. The d_w·d_a·Σ part goes into the 8 lanes of the
/// accumulator, m·s into a scalar chain beside it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn offset_block((qx, dw, m): (__m256i, __m256, __m128), y: &[u8; 36], [da, s]: &[f32; 2], acc: (__m256, __m128)) -> (__m256, __m128) {
    let p = _mm256_cvtepi32_ps(dot_us8(qx, load32(arr(y, 4))));
    (
        _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(da)), p, acc.0),
        _mm_fmadd_ss(m, _mm_set_ss(*s), acc.1),
    )
}

/// [`rows_dot`] for the offset formats (Q8_1 activations), from the block's levels as u8; each
/// chain has its own m·s sum.
macro_rules! offset_rows_dot {
    ($w:expr, $a:expr, $sc:expr, $wb:literal, |$x:ident| $levels:expr) => {
        rows_dot!($w, $a, $sc, $wb, 36, (_mm256_setzero_ps(), _mm_setzero_ps()),
            |$x| {
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(u32::from_le_bytes(*arr($x, 0)) as i32)); // [d, m]
                ($levels, _mm256_broadcastss_ps(dm), _mm_movehdup_ps(dm))
            },
            |q, y, s, acc| offset_block(q, y, s, acc),
            |a0, a1| hsum(_mm256_add_ps(a0.0, a1.0)) + _mm_cvtss_f32(_mm_add_ss(a0.1, a1.1)))
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_1<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
    offset_rows_dot!(w, a, sc, 20, |x| nibbles(arr(x, 4)))
}

/// Q5_1 levels: the nibbles ORed with 0x10 where `qh` has the element's bit.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_1<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
    offset_rows_dot!(w, a, sc, 24, |x| _mm256_or_si256(nibbles(arr(x, 8)), _mm256_and_si256(bits32(arr(x, 4)), _mm256_set1_epi8(0x10))))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_0<const R: usize>(w: &[u8], a: [&[u8]; R], sc: [&[f32]; R]) -> [f32; R] {
    // q − 16 as i8 in one OR (ggml's trick): where the fifth bit is clear, 0xF0 | nibble is
    // nibble − 16; where it is set, the nibble alone is (nibble + 16) − 16.
    signed_rows_dot!(w, a, sc, 22, |x| _mm256_or_si256(nibbles(arr(x, 6)), _mm256_andnot_si256(bits32(arr(x, 2)), _mm256_set1_epi8(0xF0u8 as i8))))
}

// ---- float rows ------------------------------------------------------------------------------

/// Dots 8-element chunks with four accumulators; `load(chunk)` widens one chunk of weights.
macro_rules! float_dot {
    ($w:expr, $a:expr, $wbytes:literal, $load:expr, $scalar:expr) => {{
        let (wc, wt) = $w.as_chunks::<$wbytes>();
        let (ac, at) = $a.as_chunks::<32>();
        let load = $load;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut quads = wc.chunks_exact(4).zip(ac.chunks_exact(4));
        for (xs, ys) in &mut quads {
            for k in 0..4 {
                // SAFETY: reads exactly the 32 bytes of `ys[k]`.
                let y = unsafe { _mm256_loadu_ps(ys[k].as_ptr().cast()) };
                acc[k] = _mm256_fmadd_ps(load(&xs[k]), y, acc[k]);
            }
        }
        let done = wc.len() / 4 * 4;
        for (x, y) in wc[done..].iter().zip(&ac[done..]) {
            // SAFETY: reads exactly the 32 bytes of `y`.
            let yv = unsafe { _mm256_loadu_ps(y.as_ptr().cast()) };
            acc[0] = _mm256_fmadd_ps(load(x), yv, acc[0]);
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(v) + super::float::vec_dot($scalar, wt, at)
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32(w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: reads exactly the 32 bytes of the chunk.
    float_dot!(
        w,
        a,
        32,
        |x: &[u8; 32]| unsafe { _mm256_loadu_ps(x.as_ptr().cast()) },
        DType::F32
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16(w: &[u8], a: &[u8]) -> f32 {
    float_dot!(
        w,
        a,
        16,
        |x: &[u8; 16]| _mm256_cvtph_ps(load16(x)),
        DType::F16
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_bf16(w: &[u8], a: &[u8]) -> f32 {
    float_dot!(
        w,
        a,
        16,
        |x: &[u8; 16]| _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load16(x)), 16)),
        DType::BF16
    )
}

// ---- K-quants (256-weight super-blocks, Q8_K activations) -----------------------------------

// Like the 32-block kernels, each K-quant kernel dots one weight row with R activation rows:
// the super-block's levels and scales are unpacked once for all R, and each activation row goes
// through the same operations in the same order whatever R is.

/// The 8 sub-block scales and minimums of a Q4_K/Q5_K super-block (6-bit, packed in bytes 4..16);
/// the minimums as i16 pairs [m0, m0, m1, m1, ..] to `madd` with an activation's 16 `bsums`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_scales(x: &[u8]) -> ([i16; 8], __m256i) {
    let (mut sc, mut mn) = ([0i16; 8], [0i16; 16]);
    for j in 0..8 {
        let (s, m) = get_scale_min_k4(j, &x[4..16]);
        (sc[j], mn[2 * j], mn[2 * j + 1]) = (s as i16, m as i16, m as i16);
    }
    // SAFETY: reads the 32 bytes of `mn`.
    (sc, unsafe { _mm256_loadu_si256(mn.as_ptr().cast()) })
}

/// A Q4_K/Q5_K super-block against one Q8_K activation block, from its unpacked levels
/// `q` (lo, hi per 64 weights), scales and minimums: accumulates d·d_a·Σ sc·q·a into `acc` and
/// dmin·d_a·Σ m·(bsums) into `mins`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_block(x: &[u8], q: &[(__m256i, __m256i); 4], sc: &[i16; 8], mn: __m256i, y: &[u8; 292], acc: &mut __m256, mins: &mut f32) {
    let yd = f32::from_le_bytes(*arr(y, 0));
    // Σ_j m_j·(bsum 2j + bsum 2j+1), exact in i32 (|m| < 64, |bsum| ≤ 16·127).
    let m = _mm256_madd_epi16(mn, load32(arr(y, 260)));
    let m = _mm_add_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    let m = _mm_add_epi32(m, _mm_unpackhi_epi64(m, m));
    let summ = _mm_cvtsi128_si32(_mm_add_epi32(m, _mm_shuffle_epi32(m, 1)));
    let mut sumi = _mm256_setzero_si256();
    for (c, &(lo, hi)) in q.iter().enumerate() {
        let p0 = _mm256_maddubs_epi16(lo, load32(arr(y, 4 + 64 * c)));
        let p1 = _mm256_maddubs_epi16(hi, load32(arr(y, 36 + 64 * c)));
        let p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c]));
        let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    let dv = _mm_cvtph_ps(_mm_cvtsi32_si128(u32::from_le_bytes(*arr(x, 0)) as i32)); // [d, dmin]
    let d = _mm_cvtss_f32(dv) * yd;
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
    *mins += _mm_cvtss_f32(_mm_movehdup_ps(dv)) * yd * summ as f32;
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_k<const R: usize>(w: &[u8], a: [&[u8]; R]) -> [f32; R] {
    let (wb, _) = w.as_chunks::<144>();
    let ab = a.map(|r| r.as_chunks::<292>().0);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut mins = [0.0f32; R];
    let m4 = _mm256_set1_epi8(0xF);
    for (i, x) in wb.iter().enumerate() {
        let (sc, mn) = k4_scales(x);
        let q = std::array::from_fn(|c| {
            let q4 = load32(arr(x, 16 + 32 * c));
            (_mm256_and_si256(q4, m4), _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4))
        });
        for r in 0..R {
            k4_block(x, &q, &sc, mn, &ab[r][i], &mut acc[r], &mut mins[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) - mins[r])
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_k<const R: usize>(w: &[u8], a: [&[u8]; R]) -> [f32; R] {
    let (wb, _) = w.as_chunks::<176>();
    let ab = a.map(|r| r.as_chunks::<292>().0);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut mins = [0.0f32; R];
    let m4 = _mm256_set1_epi8(0xF);
    let one = _mm256_set1_epi8(1);
    for (i, x) in wb.iter().enumerate() {
        let (sc, mn) = k4_scales(x);
        let qh = load32(arr(x, 16));
        // Bit j of qh[l] is the fifth bit of weight l of sub-block j; shifting 16-bit lanes
        // drags bits of the neighbour byte along, but the `& 1` keeps only bit 0 of each byte.
        let high = |j: i32| -> __m256i {
            let b = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), one);
            _mm256_slli_epi16(b, 4)
        };
        let q = std::array::from_fn(|c| {
            let q4 = load32(arr(x, 48 + 32 * c));
            (
                _mm256_or_si256(_mm256_and_si256(q4, m4), high(2 * c as i32)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), high(2 * c as i32 + 1)),
            )
        });
        for r in 0..R {
            k4_block(x, &q, &sc, mn, &ab[r][i], &mut acc[r], &mut mins[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) - mins[r])
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q6_k<const R: usize>(w: &[u8], a: [&[u8]; R]) -> [f32; R] {
    let (wb, _) = w.as_chunks::<210>();
    let ab = a.map(|r| r.as_chunks::<292>().0);
    let mut acc = [_mm256_setzero_ps(); R];
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let k32 = _mm256_set1_epi8(32);
    for (i, x) in wb.iter().enumerate() {
        // Levels 0..64 of weights 128h + 32g + l (g = 0..4), as in `q6_k::levels`.
        let q: [[__m256i; 4]; 2] = std::array::from_fn(|h| {
            let ql0 = load32(arr(x, 64 * h));
            let ql1 = load32(arr(x, 64 * h + 32));
            let qh = load32(arr(x, 128 + 32 * h));
            [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
            ]
        });
        let scv: [[__m256i; 4]; 2] = std::array::from_fn(|h| {
            std::array::from_fn(|g| {
                let e = 128 * h + 32 * g;
                let (s0, s1) = (x[192 + e / 16] as i8 as i16, x[193 + e / 16] as i8 as i16);
                _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0))
            })
        });
        let dw = super::float::f16_at(x, 208);
        for r in 0..R {
            let y = &ab[r][i];
            let yd = f32::from_le_bytes(*arr(y, 0));
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                for g in 0..4 {
                    let q8 = load32(arr(y, 4 + 128 * h + 32 * g));
                    // Σ (q − 32)·q8 = Σ q·q8 − 32·Σ q8, both within i16 per pair.
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[h][g], q8), _mm256_maddubs_epi16(k32, q8));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv[h][g]));
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * yd), _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    fn sums() -> (f32, f32) {
        let v = _mm256_setr_ps(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0);
        // 0xC200 = −3.0
        (hsum(v), f16_first(&[0x00, 0xC2, 0x00, 0x40]))
    }

    #[test]
    fn horizontal_sum_and_scales() {
        if !available() {
            return;
        }
        // SAFETY: the features were checked just above.
        let (s, d) = unsafe { sums() };
        assert_eq!(s, 36.0);
        assert_eq!(d, -3.0, "f16_first widens the block's leading f16");
    }
}
