//! `Op::Attention` on the CPU: softmax(q·kᵀ · scale + mask) · v per head (Vaswani et al., 2017),
//! with grouped-query heads (Ainslie et al., 2023): query head h reads kv head h / (n_head/n_kv_head).
//!
//! q: [T, n_head*D]; k, v: [S, n_kv_head*D]; positions: [T] for the causal mask, under which
//! query t sees keys 0..=positions[t] (keys are stored by position). out: [T, n_head*D].
//! The softmax is computed in one pass with a running maximum (online softmax), the way the GPU
//! kernels do it, so no [T, S] score matrix is kept.

use rayon::prelude::*;

use crate::graph::AttnMask;

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
        let mut max = f32::NEG_INFINITY;
        let mut sum = 0.0f32;
        o.fill(0.0);
        for j in 0..n_keys {
            let kj = &k[(j * n_kv_head + kvh) * d..][..d];
            let s = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
            // Rescale what was accumulated under the old maximum.
            let m = max.max(s);
            let correction = (max - m).exp();
            let p = (s - m).exp();
            sum = sum * correction + p;
            let vj = &v[(j * n_kv_head + kvh) * d..][..d];
            for (oi, &vi) in o.iter_mut().zip(vj) {
                *oi = *oi * correction + p * vi;
            }
            max = m;
        }
        if sum > 0.0 {
            for oi in o.iter_mut() {
                *oi /= sum;
            }
        }
    });
}
