//! `Op::MatMul` on the CPU: `out[t, n] = Σ_k x[t, k] · w[n, k]`.
//!
//! x: [T, K] f32; w: [N, K] in its stored format; out: [T, N] f32.
//! Like llama.cpp, each activation row is first converted to the weight type's dot-product format
//! (Q8_0/Q8_1/Q8_K blocks for quantized weights), so the inner loop is an integer dot product
//! over whole blocks ([`crate::quant::vec_dot`]). Work is split over output rows: each weight row
//! is read from memory once per call and reused for all T activation rows while it is in cache.

use rayon::prelude::*;

use crate::dtype::DType;
use crate::quant;

/// Output rows per parallel task: large enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

pub fn matmul(x: &[f32], t: usize, k: usize, w_dtype: DType, w: &[u8], n: usize, out: &mut [f32]) {
    assert_eq!(x.len(), t * k);
    assert_eq!(out.len(), t * n);
    let row_bytes = w_dtype.row_bytes(k).expect("graph checked the weight's row length");
    assert_eq!(w.len(), row_bytes * n);

    let act_len = quant::act_bytes(w_dtype, k);
    let mut act = vec![0u8; act_len * t];
    act.par_chunks_mut(act_len.max(1)).zip(x.par_chunks(k)).for_each(|(a, xr)| quant::quantize_act(w_dtype, xr, a));

    if t == 1 {
        out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(c, o)| {
            for (i, y) in o.iter_mut().enumerate() {
                let r = c * ROWS_PER_TASK + i;
                *y = quant::vec_dot(w_dtype, k, &w[r * row_bytes..(r + 1) * row_bytes], &act);
            }
        });
        return;
    }

    // Transposed result [N, T] so that each task writes a contiguous block; transposed back below.
    let mut out_t = vec![0.0f32; n * t];
    out_t.par_chunks_mut(ROWS_PER_TASK * t).enumerate().for_each(|(c, o)| {
        for (i, ys) in o.chunks_mut(t).enumerate() {
            let r = c * ROWS_PER_TASK + i;
            let wr = &w[r * row_bytes..(r + 1) * row_bytes];
            for (j, y) in ys.iter_mut().enumerate() {
                *y = quant::vec_dot(w_dtype, k, wr, &act[j * act_len..(j + 1) * act_len]);
            }
        }
    });
    for r in 0..n {
        for j in 0..t {
            out[j * n + r] = out_t[r * t + j];
        }
    }
}
