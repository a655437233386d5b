//! `Op::MatMul` on the CPU: `out[t, n] = Σ_k x[t, k] · w[n, k]`.
//!
//! x: [T, K] f32; w: [N, K] in its stored format; out: [T, N] f32.
//! Like llama.cpp, each activation row is first converted to the weight type's dot-product format
//! (Q8_0/Q8_1/Q8_K blocks for quantized weights), so the inner loop is an integer dot product
//! over whole blocks ([`crate::quant::vec_dot`]).
//!
//! The output is cut into tiles of [`ROW_TILE`] weight rows × [`TOKEN_TILE`] tokens, one pool
//! task each, so a tile's weight rows and activation rows stay in cache while they are reused.
//! Inside a tile, four activation rows meet each weight row at once
//! ([`crate::quant::vec_dot_rows`]): the weight block is unpacked once for four tokens. Each
//! output is computed the same way whatever T is, so prefill and decode agree bit for bit.

use super::pool::{Pool, SharedSlice};
use crate::dtype::DType;
use crate::quant;

/// Weight rows per task when there are many tokens: 64 rows of SmolLM2's FFN down-projection
/// are 60 KB of Q4_1, which stay in L2 while every token of the tile passes over them.
const ROW_TILE: usize = 64;
/// Tasks per thread for a few tokens (decode). The matvec streams its weights once from memory,
/// and the hardware prefetcher needs long sequential runs to keep up: 16-row tasks (5.7 KB of
/// SmolLM2's Q4_1) left most of the kernel's time waiting on weight loads. Four tasks per
/// thread are long runs and still let a thread that is not descheduled take over the work of
/// one that is.
const DECODE_TASKS_PER_THREAD: usize = 4;
/// Tokens per task: 64 activation rows of Q8_1 at K = 1536 are 110 KB.
const TOKEN_TILE: usize = 64;

/// Scratch for the quantized activations and their f32 block scales, kept by the backend and
/// reused across calls so that a decode step allocates nothing.
#[derive(Default)]
pub struct MatmulScratch {
    act: Vec<u8>,
    scales: Vec<f32>,
}

/// Multiplies as above.
#[allow(clippy::too_many_arguments)]
pub fn matmul(pool: &Pool, scratch: &mut MatmulScratch, x: &[f32], t: usize, k: usize, w_dtype: DType, w: &[u8], n: usize, out: &mut [f32]) {
    assert_eq!(x.len(), t * k);
    assert_eq!(out.len(), t * n);
    let row_bytes = w_dtype.row_bytes(k).expect("graph checked the weight's row length");
    assert_eq!(w.len(), row_bytes * n);
    if t == 0 || n == 0 {
        return;
    }

    let act_len = quant::act_bytes(w_dtype, k);
    let sc_len = quant::act_scales_len(w_dtype, k);
    let MatmulScratch { act, scales } = scratch;
    act.clear();
    act.resize(act_len * t, 0);
    scales.clear();
    scales.resize(sc_len * t, 0.0);
    {
        let (rows, sc_rows) = (SharedSlice::new(&mut act[..]), SharedSlice::new(&mut scales[..]));
        pool.run(t, &|j| {
            // SAFETY: task j writes only activation row j and its scales.
            let (a, s) = unsafe { (rows.slice(j * act_len, act_len), sc_rows.slice(j * sc_len, sc_len)) };
            quant::quantize_act(w_dtype, &x[j * k..(j + 1) * k], a);
            quant::act_scales(w_dtype, k, a, s);
        });
    }
    let (act, scales) = (&act[..], &scales[..]);

    let row_tile = if t < 4 { n.div_ceil(pool.threads() * DECODE_TASKS_PER_THREAD).max(16) } else { ROW_TILE };
    let (row_tiles, token_tiles) = (n.div_ceil(row_tile), t.div_ceil(TOKEN_TILE));
    let out_s = SharedSlice::new(out);
    pool.run(row_tiles * token_tiles, &|task| {
        let (rt, tt) = (task % row_tiles, task / row_tiles);
        let rows = rt * row_tile..((rt + 1) * row_tile).min(n);
        let tokens = tt * TOKEN_TILE..((tt + 1) * TOKEN_TILE).min(t);
        let a = |j: usize| &act[j * act_len..(j + 1) * act_len];
        let sc = |j: usize| &scales[j * sc_len..(j + 1) * sc_len];
        let mut j = tokens.start;
        while j < tokens.end {
            let group = if tokens.end - j >= 8 { 8 } else { (tokens.end - j).min(4) };
            let wt = &w[rows.start * row_bytes..rows.end * row_bytes];
            // SAFETY (each `put`): tiles are disjoint; this task alone writes (token, row) for
            // its tokens and rows.
            let put = |jj: usize, r: usize, y: f32| unsafe { out_s.slice(jj * n + rows.start + r, 1)[0] = y };
            match group {
                8 => quant::vec_dot_tile(w_dtype, k, wt, std::array::from_fn::<_, 8, _>(|i| a(j + i)), std::array::from_fn(|i| sc(j + i)), &mut |r, ys| {
                    for (i, y) in ys.into_iter().enumerate() {
                        put(j + i, r, y);
                    }
                }),
                4 => quant::vec_dot_tile(w_dtype, k, wt, [a(j), a(j + 1), a(j + 2), a(j + 3)], [sc(j), sc(j + 1), sc(j + 2), sc(j + 3)], &mut |r, ys| {
                    for (i, y) in ys.into_iter().enumerate() {
                        put(j + i, r, y);
                    }
                }),
                _ => {
                    for jj in j..j + group {
                        quant::vec_dot_tile(w_dtype, k, wt, [a(jj)], [sc(jj)], &mut |r, [y]| put(jj, r, y));
                    }
                }
            }
            j += group;
        }
    });
}
