//! `Op::Attention` on the CPU: softmax(q·kᵀ · scale + mask) · v per head (Vaswani et al., 2017),
//! with grouped-query heads (Ainslie et al., 2023): query head h reads kv head h / (n_head/n_kv_head).
//!
//! q: [T, n_head*D]; k, v: [S, n_kv_head*D]; positions: [T] for a causal mask, under which
//! query t sees keys 0..=positions[t] (with a sliding window of W, only the last W of them:
//! `positions[t] + 1 - W ..= positions[t]`). out: [T, n_head*D]. Key j of query t is row j, or with a
//! paged layout row `table[t, j / block_size] * block_size + j % block_size`.
//! Each (query, head) pair is one task: its row of scores (at most S floats, never the whole
//! [T, S] matrix), a softmax over it, then the weighted sum of value rows.

use super::pool::{Pool, SharedSlice};
use crate::graph::AttnMask;

/// A paged KV layout: each query row's block table (`cols` entries per row) and the block size.
#[derive(Clone, Copy, Debug)]
pub struct Paging<'a> {
    pub table: &'a [u32],
    pub cols: usize,
    pub block_size: usize,
}

/// Dot product with eight independent partial sums, so the compiler can vectorise it (a single
/// running f32 sum must be added in order).
#[inline(always)]
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

/// Everything one (query, head) pair reads.
struct Heads<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    positions: Option<&'a [u32]>,
    paging: Option<Paging<'a>>,
    n_head: usize,
    n_kv_head: usize,
    d: usize,
    scale: f32,
    mask: AttnMask,
}

impl Heads<'_> {
    /// Query t, head h (`idx = t·n_head + h`) into `o` (d floats); `scores` is scratch.
    #[inline(always)]
    fn one(&self, idx: usize, o: &mut [f32], scores: &mut Vec<f32>) {
        let Heads { q, k, v, positions, paging, n_head, n_kv_head, d, scale, mask } = *self;
        let rows = k.len() / (n_kv_head * d);
        let (t, h) = (idx / n_head, idx % n_head);
        let kvh = h / (n_head / n_kv_head);
        let qh = &q[(t * n_head + h) * d..][..d];
        let n_keys = match (paging, positions) {
            (Some(pg), p) => p.map_or(pg.cols * pg.block_size, |p| (p[t] as usize + 1).min(pg.cols * pg.block_size)),
            (None, Some(p)) if mask.is_causal() => (p[t] as usize + 1).min(rows),
            (None, _) => rows,
        };
        let first = match positions {
            Some(p) => mask.first_key(p[t] as usize).min(n_keys),
            None => 0,
        };
        // Callers check the table (every entry names a block inside the pool); the clamp here
        // only keeps a bad one from reading outside the slices.
        let at = |j: usize| {
            let row = match paging {
                Some(pg) => (pg.table[t * pg.cols + j / pg.block_size] as usize * pg.block_size + j % pg.block_size).min(rows - 1),
                None => j,
            };
            (row * n_kv_head + kvh) * d
        };
        let keys = first..n_keys;
        scores.clear();
        // A plain loop, not `extend(map(..))`: the iterator's fold would be a separate function
        // compiled without the caller's AVX2.
        for j in keys.clone() {
            scores.push(dot(qh, &k[at(j)..][..d]) * scale);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        o.fill(0.0);
        for (j, &p) in keys.zip(scores.iter()) {
            for (oi, &vi) in o.iter_mut().zip(&v[at(j)..][..d]) {
                *oi += p * vi;
            }
        }
        if sum > 0.0 {
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }

    /// [`Heads::one`] compiled for AVX2: the same f32 operations in the same order (no FMA
    /// contraction), only in wider registers, so results are identical to the bit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn one_avx2(&self, idx: usize, o: &mut [f32], scores: &mut Vec<f32>) {
        self.one(idx, o, scores)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &Pool, q: &[f32], k: &[f32], v: &[f32], positions: Option<&[u32]>, paging: Option<Paging>, n_head: usize, n_kv_head: usize, d: usize, scale: f32, mask: AttnMask, out: &mut [f32]) {
    let heads = Heads { q, k, v, positions, paging, n_head, n_kv_head, d, scale, mask };
    let items = out.len() / d.max(1);
    // (query, head) pairs per pool task: enough to amortise a claim, few enough to balance.
    let per_task = items.div_ceil(8 * pool.threads()).clamp(1, 16);
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2");
    let out_s = SharedSlice::new(out);
    pool.run(items.div_ceil(per_task), &|task| {
        let mut scores = Vec::new();
        for idx in task * per_task..((task + 1) * per_task).min(items) {
            // SAFETY: each (query, head) pair belongs to exactly one task.
            let o = unsafe { out_s.slice(idx * d, d) };
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { heads.one_avx2(idx, o, &mut scores) };
                continue;
            }
            heads.one(idx, o, &mut scores);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_util::rand_vec;

    /// Paged attention equals contiguous attention over the same keys gathered in order.
    #[test]
    fn paged_equals_gathered_contiguous() {
        let (n_head, n_kv, d, bs, n_blocks) = (4usize, 2usize, 8usize, 4usize, 9usize);
        let kv_dim = n_kv * d;
        let (k, v) = (rand_vec(n_blocks * bs * kv_dim, 1), rand_vec(n_blocks * bs * kv_dim, 2));
        let table = [7u32, 2, 8, 0];
        let positions = [13u32, 9, 0];
        let q = rand_vec(positions.len() * n_head * d, 3);
        let table_rows: Vec<u32> = positions.iter().flat_map(|_| table).collect();
        let mut paged = vec![0.0; q.len()];
        let pg = Paging { table: &table_rows, cols: table.len(), block_size: bs };
        attention(&Pool::new(2), &q, &k, &v, Some(&positions), Some(pg), n_head, n_kv, d, 0.3, AttnMask::Causal, &mut paged);
        let gather = |x: &[f32]| -> Vec<f32> { table.iter().flat_map(|&b| x[b as usize * bs * kv_dim..][..bs * kv_dim].to_vec()).collect() };
        let mut contiguous = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, &gather(&k), &gather(&v), Some(&positions), None, n_head, n_kv, d, 0.3, AttnMask::Causal, &mut contiguous);
        assert_eq!(paged, contiguous);
        // And the table matters: a different block order gives different outputs.
        let other: Vec<u32> = positions.iter().flat_map(|_| [2u32, 7, 8, 0]).collect();
        let mut shuffled = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, &k, &v, Some(&positions), Some(Paging { table: &other, ..pg }), n_head, n_kv, d, 0.3, AttnMask::Causal, &mut shuffled);
        assert_ne!(paged, shuffled);
    }

    /// A sliding window of W is the causal mask over only the last W keys: the same as
    /// contiguous causal attention over keys moved so that the window starts at row 0.
    #[test]
    fn sliding_window_sees_only_the_last_keys() {
        let (n_head, n_kv, d, s, w) = (2usize, 1usize, 8usize, 11usize, 4usize);
        let (k, v) = (rand_vec(s * d, 4), rand_vec(s * d, 5));
        let positions = [0u32, 2, 3, 7, 10];
        let q = rand_vec(positions.len() * n_head * d, 6);
        let mut windowed = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, &k, &v, Some(&positions), None, n_head, n_kv, d, 0.4, AttnMask::SlidingWindow { window: w }, &mut windowed);
        for (t, &p) in positions.iter().enumerate() {
            let first = (p as usize + 1).saturating_sub(w);
            let (kw, vw) = (&k[first * d..], &v[first * d..]);
            let qt = &q[t * n_head * d..][..n_head * d];
            let mut want = vec![0.0; n_head * d];
            attention(&Pool::new(2), qt, kw, vw, Some(&[p - first as u32]), None, n_head, n_kv, d, 0.4, AttnMask::Causal, &mut want);
            assert_eq!(&windowed[t * n_head * d..][..n_head * d], &want[..], "query {t} at position {p}");
        }
        // Past the window the result differs from plain causal attention.
        let mut causal = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, &k, &v, Some(&positions), None, n_head, n_kv, d, 0.4, AttnMask::Causal, &mut causal);
        assert_eq!(windowed[..3 * n_head * d], causal[..3 * n_head * d]);
        assert_ne!(windowed[3 * n_head * d..], causal[3 * n_head * d..]);
    }
}
