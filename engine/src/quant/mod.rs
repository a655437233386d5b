//! Quantized block formats, bit-compatible with ggml/GGUF (ggml-common.h, ggml-quants.c).
//!
//! Four operations per storage type, each on one row (a whole number of blocks):
//! [`dequantize_row`], [`quantize_row`] (ggml's reference quantizers, bit for bit), and the
//! matvec pair [`quantize_act`] + [`vec_dot`]: the f32 activation row is converted once into
//! llama.cpp's `vec_dot_type` for the weight type (`q8_act.rs`), then dotted with each weight
//! row using integer multiply-adds.
//!
//! Code map: `float.rs` (F32/F16/BF16), `q4_0.rs`, `q4_1.rs`, `q5_0.rs`, `q5_1.rs`, `q8_0.rs`,
//! `q4_k.rs`, `q5_k.rs`, `q6_k.rs` (layout, dequantize, quantize, scalar dot, tests), `kquant.rs`
//! (shared K-quant scale search), `q8_act.rs` (activation formats), `x86.rs` (AVX2 dots).
//!
//! **Architecture Invariant**: each format's scalar code is the readable reference; the SIMD
//! kernels are picked at run time, must match it (tests compare them), and never change the
//! byte layout. Nothing here allocates on the `vec_dot` path.

use crate::DType;

#[cfg(test)]
mod dot_tests;
mod float;
#[cfg(test)]
mod golden_tests;
mod kquant;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_act;
#[cfg(test)]
mod testutil;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_vnni;

/// Bytes of a row of `n` elements; a wrong `n` is a broken caller invariant.
fn row_bytes(dtype: DType, n: usize) -> usize {
    match dtype.row_bytes(n) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// Dequantizes one row. `src.len() == dtype.row_bytes(dst.len())` (panic on mismatch: a broken
/// caller invariant). Works for F32/F16/BF16 too (little-endian bytes).
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    assert_eq!(
        src.len(),
        row_bytes(dtype, dst.len()),
        "{dtype} row of {} elements",
        dst.len()
    );
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => float::dequantize(dtype, src, dst),
        DType::Q4_0 => q4_0::dequantize(src, dst),
        DType::Q4_1 => q4_1::dequantize(src, dst),
        DType::Q5_0 => q5_0::dequantize(src, dst),
        DType::Q5_1 => q5_1::dequantize(src, dst),
        DType::Q8_0 => q8_0::dequantize(src, dst),
        DType::Q4K => q4_k::dequantize(src, dst),
        DType::Q5K => q5_k::dequantize(src, dst),
        DType::Q6K => q6_k::dequantize(src, dst),
        DType::U32 => panic!("u32 is not a weight type"),
    }
}

/// Quantizes one row with ggml's reference quantizer for that type (`quantize_row_*_ref`; for
/// K-quants the reference path without importance matrix), bit-exact with ggml. Also
/// F32/F16/BF16 (round-to-nearest-even).
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) {
    assert_eq!(
        dst.len(),
        row_bytes(dtype, src.len()),
        "{dtype} row of {} elements",
        src.len()
    );
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => float::quantize(dtype, src, dst),
        DType::Q4_0 => q4_0::quantize(src, dst),
        DType::Q4_1 => q4_1::quantize(src, dst),
        DType::Q5_0 => q5_0::quantize(src, dst),
        DType::Q5_1 => q5_1::quantize(src, dst),
        DType::Q8_0 => q8_0::quantize(src, dst),
        DType::Q4K => q4_k::quantize(src, dst),
        DType::Q5K => q5_k::quantize(src, dst),
        DType::Q6K => q6_k::quantize(src, dst),
        DType::U32 => panic!("u32 is not a weight type"),
    }
}

/// Bytes of the activation row that `vec_dot` expects for weights of type `weight` and length
/// n: Q8_0 blocks for Q4_0, Q5_0 and Q8_0, Q8_1 for Q4_1 and Q5_1, Q8_K for Q4_K/Q5_K/Q6_K, and
/// plain f32 (LE) for F32/F16/BF16.
pub fn act_bytes(weight: DType, n: usize) -> usize {
    assert!(
        n.is_multiple_of(weight.block_len()),
        "{weight} row of {n} elements is not a whole number of blocks"
    );
    q8_act::act_bytes(weight, n)
}

/// Converts an f32 activation row into that format (ggml's quantize_row_q8_0/q8_1/q8_K
/// reference semantics).
pub fn quantize_act(weight: DType, x: &[f32], dst: &mut [u8]) {
    assert_eq!(
        dst.len(),
        act_bytes(weight, x.len()),
        "activation row for {weight}, {} elements",
        x.len()
    );
    q8_act::quantize_act(weight, x, dst);
}

/// Entries of the f32 scale row that [`act_scales`] writes for an activation row of n elements.
pub fn act_scales_len(weight: DType, n: usize) -> usize {
    q8_act::act_scales_len(weight, n)
}

/// The per-block scales of a prepared activation row (from [`quantize_act`]) as f32, for
/// [`vec_dot_rows_scaled`]: computed once per activation row instead of once per weight row.
pub fn act_scales(weight: DType, n: usize, act: &[u8], out: &mut [f32]) {
    assert_eq!(act.len(), act_bytes(weight, n), "activation row for {weight}, {n} elements");
    assert_eq!(out.len(), act_scales_len(weight, n), "activation scales for {weight}, {n} elements");
    q8_act::act_scales(weight, act, out);
}

/// Dot product of one weight row (n elements, stored as `weight`) with one prepared activation
/// row. Uses SIMD kernels when the CPU has them, the scalar reference otherwise.
pub fn vec_dot(weight: DType, n: usize, w: &[u8], act: &[u8]) -> f32 {
    let [s] = vec_dot_rows(weight, n, w, [act]);
    s
}

/// [`vec_dot`] of one weight row with R activation rows at once (prefill and batched decode):
/// the weight row is read and unpacked once for all R. Each result equals `vec_dot` of that
/// activation row bit for bit.
pub fn vec_dot_rows<const R: usize>(weight: DType, n: usize, w: &[u8], acts: [&[u8]; R]) -> [f32; R] {
    let len = act_scales_len(weight, n);
    let mut scales = vec![0.0f32; len * R];
    for (a, s) in acts.iter().zip(scales.chunks_exact_mut(len.max(1))) {
        // (a wrong length is reported by vec_dot_rows_scaled)
        if a.len() == act_bytes(weight, n) {
            q8_act::act_scales(weight, a, s);
        }
    }
    let rows: [&[f32]; R] = std::array::from_fn(|r| &scales[r * len..(r + 1) * len]);
    vec_dot_rows_scaled(weight, n, w, acts, rows)
}

/// [`vec_dot_rows`] with each activation row's [`act_scales`] computed beforehand (the matmul
/// does it once per token). The same results, bit for bit.
pub fn vec_dot_rows_scaled<const R: usize>(weight: DType, n: usize, w: &[u8], acts: [&[u8]; R], scales: [&[f32]; R]) -> [f32; R] {
    assert_eq!(
        w.len(),
        row_bytes(weight, n),
        "{weight} weight row of {n} elements"
    );
    let want = act_bytes(weight, n);
    let want_scales = act_scales_len(weight, n);
    for (a, s) in acts.iter().zip(&scales) {
        assert_eq!(a.len(), want, "activation row for {weight}, {n} elements");
        assert_eq!(s.len(), want_scales, "activation scales for {weight}, {n} elements");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = x86_vnni::vec_dot_rows(weight, w, acts, scales) {
        return s;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = x86::vec_dot_rows(weight, w, acts, scales) {
        return s;
    }
    acts.map(|a| vec_dot_scalar(weight, w, a))
}

/// [`vec_dot_rows_scaled`] of each of the consecutive weight rows in `w` (a whole number of
/// rows of n elements) with the same R activation rows: `put(i, results)` for row i. Lengths are
/// checked once per call rather than once per row; the results are `vec_dot_rows_scaled`'s.
pub fn vec_dot_tile<const R: usize>(weight: DType, n: usize, w: &[u8], acts: [&[u8]; R], scales: [&[f32]; R], put: &mut dyn FnMut(usize, [f32; R])) {
    let rb = row_bytes(weight, n);
    assert!(rb > 0 && w.len().is_multiple_of(rb), "{weight} weight rows of {n} elements");
    let (want, want_scales) = (act_bytes(weight, n), act_scales_len(weight, n));
    for (a, s) in acts.iter().zip(&scales) {
        assert_eq!(a.len(), want, "activation row for {weight}, {n} elements");
        assert_eq!(s.len(), want_scales, "activation scales for {weight}, {n} elements");
    }
    #[cfg(target_arch = "x86_64")]
    if x86_vnni::vec_dot_tile(weight, w, rb, acts, scales, put) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if x86::vec_dot_tile(weight, w, rb, acts, scales, put) {
        return;
    }
    for (i, wr) in w.chunks_exact(rb).enumerate() {
        put(i, vec_dot_rows_scaled(weight, n, wr, acts, scales));
    }
}

/// The portable reference for [`vec_dot`] (lengths already checked).
fn vec_dot_scalar(weight: DType, w: &[u8], act: &[u8]) -> f32 {
    match weight {
        DType::F32 | DType::F16 | DType::BF16 => float::vec_dot(weight, w, act),
        DType::Q4_0 => q4_0::vec_dot(w, act),
        DType::Q4_1 => q4_1::vec_dot(w, act),
        DType::Q5_0 => q5_0::vec_dot(w, act),
        DType::Q5_1 => q5_1::vec_dot(w, act),
        DType::Q8_0 => q8_0::vec_dot(w, act),
        DType::Q4K => q4_k::vec_dot(w, act),
        DType::Q5K => q5_k::vec_dot(w, act),
        DType::Q6K => q6_k::vec_dot(w, act),
        DType::U32 => panic!("u32 is not a weight type"),
    }
}
