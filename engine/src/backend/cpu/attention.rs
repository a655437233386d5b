//! `Op::Attention` on the CPU: softmax(q·kᵀ · scale + mask) · v per head (Vaswani et al., 2017),
//! with grouped-query heads (Ainslie et al., 2023): query head h reads kv head h / (n_head/n_kv_head).
//!
//! q: [T, n_head*D]; k, v: [S, n_kv_head*D]; positions: [T] for the causal mask, under which
//! query t sees keys 0..=positions[t] (keys are stored by position). out: [T, n_head*D].
//! Each (query, head) pair is one task: its row of scores (at most S floats, never the whole
//! [T, S] matrix), a softmax over it, then the weighted sum of value rows.

use rayon::prelude::*;

use crate::graph::AttnMask;

/// Dot product with eight independent partial sums, so the compiler can vectorise it (a single
/// running f32 sum must be added in order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], positions: Option<&[u32]>, n_head: usize, n_kv_head: usize, d: usize, scale: f32, mask: AttnMask, out: &mut [f32]) {
    let s_len = k.len() / (n_kv_head * d);
    let group = n_head / n_kv_head;
    out.par_chunks_mut(d).enumerate().for_each(|(idx, o)| {
        let (t, h) = (idx / n_head, idx % n_head);
        let kvh = h / group;
        let qh = &q[(t * n_head + h) * d..][..d];
        let n_keys = match (mask, positions) {
            (AttnMask::Causal, Some(p)) => (p[t] as usize + 1).min(s_len),
            _ => s_len,
        };
        let at = |j: usize| (j * n_kv_head + kvh) * d;
        let mut scores: Vec<f32> = (0..n_keys).map(|j| dot(qh, &k[at(j)..][..d]) * scale).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        o.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            for (oi, &vi) in o.iter_mut().zip(&v[at(j)..][..d]) {
                *oi += p * vi;
            }
        }
        if sum > 0.0 {
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    });
}
