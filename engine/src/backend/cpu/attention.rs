//! `Op::Attention` on the CPU: softmax(q·kᵀ · scale + mask) · v per head (Vaswani et al., 2017),
//! with grouped-query heads (Ainslie et al., 2023): query head h reads kv head h / (n_head/n_kv_head).
//!
//! q: [T, n_head*D]; k, v: [S, n_kv_head*D]; positions: [T] for a causal mask, under which
//! query t sees keys 0..=positions[t] (with a sliding window of W, only the last W of them:
//! `positions[t] + 1 - W ..= positions[t]`). out: [T, n_head*D]. Key j of query t is row j, or with a
//! paged layout row `table[t, j / block_size] * block_size + j % block_size`.
//! A task is one kv head for a block of up to [`TOKEN_BLOCK`] consecutive query tokens: its query
//! heads (grouped-query attention) for those tokens share each key and value row loaded. Each
//! query keeps its own row of scores (at most S floats, never the whole [T, S] matrix), a
//! softmax over it, then the weighted sum of value rows.
//!
//! Keys and values may be kept in f16 or q8_0 ([`Kv`]): a task decodes each head's row to f32
//! as it reads it, and every product and sum is the f32 one (so an f16 cache gives exactly the
//! bits of an f32 cache holding the same f16-rounded values).

use super::pool::{Pool, SharedSlice};
use crate::dtype::DType::Q8_0;
use crate::graph::AttnMask;

/// A paged KV layout: each query row's block table (`cols` entries per row) and the block size.
#[derive(Clone, Copy, Debug)]
pub struct Paging<'a> {
    pub table: &'a [u32],
    pub cols: usize,
    pub block_size: usize,
}

/// Keys or values as the cache keeps them: `[S, n_kv_head·D]` values in one of
/// [`DType::KV_TYPES`](crate::dtype::DType::KV_TYPES) (q8_0 as ggml's blocks of 32, each head a
/// whole number of blocks).
#[derive(Clone, Copy, Debug)]
pub enum Kv<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Q8_0(&'a [u8]),
}

impl Kv<'_> {
    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            Kv::F32(x) => x.len(),
            Kv::F16(x) => x.len(),
            Kv::Q8_0(x) => x.len() / Q8_0.block_bytes() * Q8_0.block_len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values `e..e + d` as f32: a slice of the cache itself, or decoded into `buf`.
    #[inline(always)]
    fn head<'b>(&'b self, e: usize, d: usize, buf: &'b mut [f32]) -> &'b [f32] {
        use half::slice::HalfFloatSliceExt;
        match *self {
            Kv::F32(x) => &x[e..][..d],
            Kv::F16(x) => {
                x[e..][..d].convert_to_f32_slice(&mut buf[..d]);
                &buf[..d]
            }
            Kv::Q8_0(x) => {
                let block = |n: usize| n / Q8_0.block_len() * Q8_0.block_bytes();
                crate::quant::dequantize_row(Q8_0, &x[block(e)..][..block(d)], &mut buf[..d]);
                &buf[..d]
            }
        }
    }
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
    // A running sum, lane by lane. (A tree would be faster, but these sums feed Gemma 3's
    // f16-rounded attention, where its different rounding moved a reference position past the
    // near-tie bound: the reference tests pin this order.)
    acc.iter().sum::<f32>() + tail
}

/// o += p · v, elementwise.
#[inline(always)]
fn axpy(o: &mut [f32], p: f32, v: &[f32]) {
    for (oi, &vi) in o.iter_mut().zip(v) {
        *oi += p * vi;
    }
}

/// [`axpy`] in AVX2 registers (the same operation per element).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn axpy_avx2(o: &mut [f32], p: f32, v: &[f32]) {
    use std::arch::x86_64::*;
    let n = o.len().min(v.len());
    let (co, to) = o[..n].as_chunks_mut::<8>();
    let (cv, tv) = v[..n].as_chunks::<8>();
    let pv = _mm256_set1_ps(p);
    for (o, v) in co.iter_mut().zip(cv) {
        // SAFETY: reads and writes exactly the 8 floats of each chunk.
        unsafe {
            let r = _mm256_add_ps(_mm256_loadu_ps(o.as_ptr()), _mm256_mul_ps(pv, _mm256_loadu_ps(v.as_ptr())));
            _mm256_storeu_ps(o.as_mut_ptr(), r);
        }
    }
    axpy(to, p, tv);
}

/// [`dot`] in AVX2 registers: the same products and additions in the same order (lane i of the
/// accumulator is `acc[i]`, then the same running sum), so the same bits. The compiler had
/// vectorised the portable loop two lanes at a time.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let (ca, cb) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let tail: f32 = ca.1.iter().zip(cb.1).map(|(x, y)| x * y).sum();
    let mut acc = _mm256_setzero_ps();
    for (x, y) in ca.0.iter().zip(cb.0) {
        // SAFETY: reads exactly the 8 floats of each chunk.
        let (x, y) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: writes exactly the 8 floats of `lanes`.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    lanes.iter().sum::<f32>() + tail
}

/// [`dot_avx2`] of `q` with four key rows at once: four independent chains (the single chain of
/// one dot is latency-bound), each the same operations in the same order, so each result has
/// `dot_avx2`'s bits.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn dot4_avx2(q: &[f32], k: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let (cq, tq) = q.as_chunks::<8>();
    let ck = k.map(|r| r[..q.len()].as_chunks::<8>());
    let mut acc = [_mm256_setzero_ps(); 4];
    for (c, x) in cq.iter().enumerate() {
        // SAFETY: reads exactly the 8 floats of each chunk.
        let x = unsafe { _mm256_loadu_ps(x.as_ptr()) };
        for r in 0..4 {
            let y = unsafe { _mm256_loadu_ps(ck[r].0[c].as_ptr()) };
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(x, y));
        }
    }
    std::array::from_fn(|r| {
        let tail: f32 = tq.iter().zip(ck[r].1).map(|(x, y)| x * y).sum();
        let mut lanes = [0.0f32; 8];
        // SAFETY: writes exactly the 8 floats of `lanes`.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]) };
        lanes.iter().sum::<f32>() + tail
    })
}

/// `o += p_j · v_j` for every row j of `v` (rows `stride` apart) in order: [`axpy_avx2`] once per
/// row, with `o` held in registers across the rows instead of loaded and stored for each.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn axpy_rows_avx2(o: &mut [f32], ps: &[f32], v: &[f32], stride: usize) {
    use std::arch::x86_64::*;
    /// Columns c0..c0 + 8N of `o`, over every row.
    #[inline(always)]
    fn cols<const N: usize>(o: &mut [f32], ps: &[f32], v: &[f32], stride: usize, c0: usize) {
        let o = &mut o[c0..c0 + 8 * N];
        // SAFETY (all loads and stores): 8 floats at offsets checked against the slices.
        let mut acc: [__m256; N] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(o[8 * i..8 * i + 8].as_ptr()) });
        for (j, &p) in ps.iter().enumerate() {
            let row = &v[j * stride + c0..j * stride + c0 + 8 * N];
            let pv = unsafe { _mm256_set1_ps(p) };
            for i in 0..N {
                let x = unsafe { _mm256_loadu_ps(row[8 * i..8 * i + 8].as_ptr()) };
                acc[i] = unsafe { _mm256_add_ps(acc[i], _mm256_mul_ps(pv, x)) };
            }
        }
        for i in 0..N {
            unsafe { _mm256_storeu_ps(o[8 * i..8 * i + 8].as_mut_ptr(), acc[i]) };
        }
    }
    let d = o.len();
    let mut c = 0;
    while c + 64 <= d {
        cols::<8>(o, ps, v, stride, c);
        c += 64;
    }
    while c + 8 <= d {
        cols::<1>(o, ps, v, stride, c);
        c += 8;
    }
    for (j, &p) in ps.iter().enumerate() {
        for (oi, &vi) in o[c..].iter_mut().zip(&v[j * stride + c..j * stride + d]) {
            *oi += p * vi;
        }
    }
}

/// Everything one (query, head) pair reads.
struct Heads<'a> {
    q: &'a [f32],
    k: Kv<'a>,
    v: Kv<'a>,
    /// Rows of k (and v), counted once: `key_at` runs for every key.
    rows: usize,
    positions: Option<&'a [u32]>,
    paging: Option<Paging<'a>>,
    n_head: usize,
    n_kv_head: usize,
    d: usize,
    scale: f32,
    mask: AttnMask,
}

/// Tokens per task in prefill: the query heads of one kv head for this many consecutive tokens
/// share every key and value row they load.
const TOKEN_BLOCK: usize = 8;

/// Queries in a block from which gathering its keys and values first pays ([`Heads::block_gathered_avx2`]):
/// a decode step's few queries read each row once in place.
const GATHER_QUERIES: usize = 8;

impl Heads<'_> {
    /// The keys query token t sees: `first..n_keys`.
    fn key_range(&self, t: usize) -> (usize, usize) {
        let rows = self.rows;
        let n_keys = match (self.paging, self.positions) {
            (Some(pg), p) => p.map_or(pg.cols * pg.block_size, |p| (p[t] as usize + 1).min(pg.cols * pg.block_size)),
            (None, Some(p)) if self.mask.is_causal() => (p[t] as usize + 1).min(rows),
            (None, _) => rows,
        };
        let first = match self.positions {
            Some(p) => self.mask.first_key(p[t] as usize).min(n_keys),
            None => 0,
        };
        (first, n_keys)
    }

    /// Where head `kvh` of key j starts (an element of k and v) for the block whose first token
    /// is `t0` (its block-table row, when paged).
    #[inline(always)]
    fn key_at(&self, t0: usize, kvh: usize, j: usize) -> usize {
        let row = match self.paging {
            // Callers check the table (every entry names a block inside the pool); the
            // clamp only keeps a bad one from reading outside the slices.
            Some(pg) => (pg.table[t0 * pg.cols + j / pg.block_size] as usize * pg.block_size + j % pg.block_size).min(self.rows - 1),
            None => j,
        };
        (row * self.n_kv_head + kvh) * self.d
    }

    /// Each token's key range, and the keys any of them sees: `lo..hi`.
    fn key_ranges(&self, tokens: std::ops::Range<usize>) -> (Vec<(usize, usize)>, usize, usize) {
        let ranges: Vec<(usize, usize)> = tokens.map(|t| self.key_range(t)).collect();
        let lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        (ranges, lo, hi)
    }

    /// Tokens `tokens`, all query heads of kv head `kvh`, into `out` (per token, the group's
    /// g·d output floats). The tokens share one key mapping (no paging, or equal block-table
    /// rows), so each key and value row is loaded once for all g·|tokens| queries. Each query
    /// still does exactly the f32 operations of attending alone, in the same order (scores in
    /// key order, softmax, weighted values in key order), so results do not depend on how
    /// queries are grouped: prefill, decode and batches agree bit for bit.
    #[inline(always)]
    fn block<'o>(&self, tokens: std::ops::Range<usize>, kvh: usize, out: &mut dyn FnMut(usize) -> &'o mut [f32], scratch: &mut Scratch, dot: impl Fn(&[f32], &[f32]) -> f32, axpy: impl Fn(&mut [f32], f32, &[f32])) {
        let Heads { q, k, v, n_head, n_kv_head, d, scale, .. } = *self;
        let g = n_head / n_kv_head;
        let t0 = tokens.start;
        let at = |j: usize| self.key_at(t0, kvh, j);
        let (ranges, lo, hi) = self.key_ranges(tokens.clone());
        let span = hi.saturating_sub(lo);
        let nq = ranges.len() * g;
        let Scratch { scores, acc, row, .. } = scratch;
        row.resize(d, 0.0);
        scores.clear();
        scores.resize(nq * span, 0.0);
        acc.clear();
        acc.resize(nq * d, 0.0);
        let query = |qi: usize| {
            let (t, h) = (t0 + qi / g, kvh * g + qi % g);
            &q[(t * n_head + h) * d..][..d]
        };
        for j in lo..hi {
            let kr = k.head(at(j), d, row);
            for qi in 0..nq {
                let (first, n) = ranges[qi / g];
                if (first..n).contains(&j) {
                    scores[qi * span + j - lo] = dot(query(qi), kr) * scale;
                }
            }
        }
        let mut sums = vec![0.0f32; nq];
        for qi in 0..nq {
            let (first, n) = ranges[qi / g];
            let sc = &mut scores[qi * span..][..span][first.max(lo) - lo..n.max(lo) - lo];
            let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for s in sc.iter_mut() {
                *s = (*s - max).exp();
                sums[qi] += *s;
            }
        }
        for j in lo..hi {
            let vr = v.head(at(j), d, row);
            for qi in 0..nq {
                let (first, n) = ranges[qi / g];
                if (first..n).contains(&j) {
                    axpy(&mut acc[qi * d..][..d], scores[qi * span + j - lo], vr);
                }
            }
        }
        write_out(tokens, g, d, acc, &sums, out);
    }

    /// [`Heads::block`] compiled for AVX2: the same f32 operations in the same order (no FMA
    /// contraction), only in wider registers, so results are identical to the bit. A block of
    /// many queries (prefill) takes [`Heads::block_gathered_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn block_avx2<'o>(&self, tokens: std::ops::Range<usize>, kvh: usize, out: &mut dyn FnMut(usize) -> &'o mut [f32], scratch: &mut Scratch) {
        if tokens.len() * (self.n_head / self.n_kv_head) >= GATHER_QUERIES {
            return self.block_gathered_avx2(tokens, kvh, out, scratch);
        }
        self.block(tokens, kvh, out, scratch, |a, b| dot_avx2(a, b), |o, p, v| axpy_avx2(o, p, v))
    }

    /// [`Heads::block`] for many queries: the keys and values the block sees are first gathered
    /// (decoded) into contiguous rows, then each query runs over all of them with its own values
    /// in registers: four keys' dots at a time ([`dot4_avx2`]) and its output accumulator held
    /// across the value rows ([`axpy_rows_avx2`]). Every query's operations and their order are
    /// `block`'s, so the bits are too (`a_prompt_at_once_equals_one_token_at_a_time_bit_for_bit`).
    /// pp512 on SmolLM2 had spent ~21% in attention, most of it reloading q and the outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn block_gathered_avx2<'o>(&self, tokens: std::ops::Range<usize>, kvh: usize, out: &mut dyn FnMut(usize) -> &'o mut [f32], scratch: &mut Scratch) {
        let Heads { q, k, v, n_head, n_kv_head, d, scale, .. } = *self;
        let g = n_head / n_kv_head;
        let t0 = tokens.start;
        let (ranges, lo, hi) = self.key_ranges(tokens.clone());
        let span = hi.saturating_sub(lo);
        let nq = ranges.len() * g;
        let Scratch { scores, acc, row, keys, values } = scratch;
        row.resize(d, 0.0);
        keys.clear();
        values.clear();
        for j in lo..hi {
            let e = self.key_at(t0, kvh, j);
            keys.extend_from_slice(k.head(e, d, row));
            values.extend_from_slice(v.head(e, d, row));
        }
        scores.clear();
        scores.resize(nq * span, 0.0);
        acc.clear();
        acc.resize(nq * d, 0.0);
        let mut sums = vec![0.0f32; nq];
        for qi in 0..nq {
            let (t, h) = (t0 + qi / g, kvh * g + qi % g);
            let qv = &q[(t * n_head + h) * d..][..d];
            let (first, n) = ranges[qi / g];
            let (a, b) = (first.max(lo) - lo, n.max(lo) - lo);
            let sc = &mut scores[qi * span..][..span][a..b];
            let key = |j: usize| &keys[(a + j) * d..][..d];
            let mut j = 0;
            while j + 4 <= sc.len() {
                let s4 = dot4_avx2(qv, [key(j), key(j + 1), key(j + 2), key(j + 3)]);
                for r in 0..4 {
                    sc[j + r] = s4[r] * scale;
                }
                j += 4;
            }
            while j < sc.len() {
                sc[j] = dot_avx2(qv, key(j)) * scale;
                j += 1;
            }
            let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for s in sc.iter_mut() {
                *s = (*s - max).exp();
                sums[qi] += *s;
            }
            axpy_rows_avx2(&mut acc[qi * d..][..d], sc, &values[a * d..b * d], d);
        }
        write_out(tokens, g, d, acc, &sums, out);
    }
}

/// Each query's accumulated output divided by its softmax sum, into token t's `out(t)` (the g·d
/// floats of the kv head's query heads).
fn write_out<'o>(tokens: std::ops::Range<usize>, g: usize, d: usize, acc: &[f32], sums: &[f32], out: &mut dyn FnMut(usize) -> &'o mut [f32]) {
    for (ti, t) in tokens.enumerate() {
        let o = out(t);
        for hq in 0..g {
            let qi = ti * g + hq;
            let (src, dst) = (&acc[qi * d..][..d], &mut o[hq * d..][..d]);
            dst.copy_from_slice(src);
            if sums[qi] > 0.0 {
                let inv = 1.0 / sums[qi];
                dst.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    acc: Vec<f32>,
    /// One head's key or value row decoded from f16 or q8_0.
    row: Vec<f32>,
    /// The keys and values a gathered block sees, decoded, one row after another.
    keys: Vec<f32>,
    values: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &Pool, q: &[f32], k: Kv, v: Kv, positions: Option<&[u32]>, paging: Option<Paging>, n_head: usize, n_kv_head: usize, d: usize, scale: f32, mask: AttnMask, out: &mut [f32]) {
    let rows = k.len() / (n_kv_head * d).max(1);
    let heads = Heads { q, k, v, rows, positions, paging, n_head, n_kv_head, d, scale, mask };
    let t = out.len() / (n_head * d).max(1);
    if t == 0 || d == 0 {
        return;
    }
    let g = n_head / n_kv_head;
    // Blocks of consecutive tokens that share a key mapping (with paging: equal table rows).
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=t {
        let same = i < t
            && i - start < TOKEN_BLOCK
            && paging.is_none_or(|pg| pg.table[i * pg.cols..][..pg.cols] == pg.table[start * pg.cols..][..pg.cols]);
        if !same {
            blocks.push(start..i);
            start = i;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2");
    let out_s = SharedSlice::new(out);
    pool.run(blocks.len() * n_kv_head, &|task| {
        let (tokens, kvh) = (blocks[task / n_kv_head].clone(), task % n_kv_head);
        let mut scratch = Scratch::default();
        // SAFETY: token t's outputs for kv head kvh (g·d floats) belong to this task alone.
        let mut out_of = |t: usize| unsafe { out_s.slice((t * n_head + kvh * g) * d, g * d) };
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { heads.block_avx2(tokens, kvh, &mut out_of, &mut scratch) };
            return;
        }
        heads.block(tokens, kvh, &mut out_of, &mut scratch, dot, axpy);
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
        attention(&Pool::new(2), &q, Kv::F32(&k), Kv::F32(&v), Some(&positions), Some(pg), n_head, n_kv, d, 0.3, AttnMask::Causal, &mut paged);
        let gather = |x: &[f32]| -> Vec<f32> { table.iter().flat_map(|&b| x[b as usize * bs * kv_dim..][..bs * kv_dim].to_vec()).collect() };
        let mut contiguous = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, Kv::F32(&gather(&k)), Kv::F32(&gather(&v)), Some(&positions), None, n_head, n_kv, d, 0.3, AttnMask::Causal, &mut contiguous);
        assert_eq!(paged, contiguous);
        // And the table matters: a different block order gives different outputs.
        let other: Vec<u32> = positions.iter().flat_map(|_| [2u32, 7, 8, 0]).collect();
        let mut shuffled = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, Kv::F32(&k), Kv::F32(&v), Some(&positions), Some(Paging { table: &other, ..pg }), n_head, n_kv, d, 0.3, AttnMask::Causal, &mut shuffled);
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
        attention(&Pool::new(2), &q, Kv::F32(&k), Kv::F32(&v), Some(&positions), None, n_head, n_kv, d, 0.4, AttnMask::SlidingWindow { window: w }, &mut windowed);
        for (t, &p) in positions.iter().enumerate() {
            let first = (p as usize + 1).saturating_sub(w);
            let (kw, vw) = (&k[first * d..], &v[first * d..]);
            let qt = &q[t * n_head * d..][..n_head * d];
            let mut want = vec![0.0; n_head * d];
            attention(&Pool::new(2), qt, Kv::F32(kw), Kv::F32(vw), Some(&[p - first as u32]), None, n_head, n_kv, d, 0.4, AttnMask::Causal, &mut want);
            assert_eq!(&windowed[t * n_head * d..][..n_head * d], &want[..], "query {t} at position {p}");
        }
        // Past the window the result differs from plain causal attention.
        let mut causal = vec![0.0; q.len()];
        attention(&Pool::new(2), &q, Kv::F32(&k), Kv::F32(&v), Some(&positions), None, n_head, n_kv, d, 0.4, AttnMask::Causal, &mut causal);
        assert_eq!(windowed[..3 * n_head * d], causal[..3 * n_head * d]);
        assert_ne!(windowed[3 * n_head * d..], causal[3 * n_head * d..]);
    }

    /// Grouping queries (all of a prompt at once, blocks of tokens, the heads of a kv head)
    /// changes nothing: each token attended alone gives the same bits, for a causal mask and a
    /// sliding window, with a token count that is not a multiple of the block.
    #[test]
    fn a_prompt_at_once_equals_one_token_at_a_time_bit_for_bit() {
        let (n_head, n_kv, d, s) = (6usize, 2usize, 20usize, 19usize);
        let (k, v) = (rand_vec(s * n_kv * d, 7), rand_vec(s * n_kv * d, 8));
        let positions: Vec<u32> = (0..s as u32).collect();
        let q = rand_vec(s * n_head * d, 9);
        for mask in [AttnMask::Causal, AttnMask::SlidingWindow { window: 5 }] {
            let mut all = vec![0.0; q.len()];
            attention(&Pool::new(2), &q, Kv::F32(&k), Kv::F32(&v), Some(&positions), None, n_head, n_kv, d, 0.3, mask, &mut all);
            for t in 0..s {
                let mut one = vec![0.0; n_head * d];
                let qt = &q[t * n_head * d..][..n_head * d];
                attention(&Pool::new(1), qt, Kv::F32(&k), Kv::F32(&v), Some(&positions[t..t + 1]), None, n_head, n_kv, d, 0.3, mask, &mut one);
                assert_eq!(one, all[t * n_head * d..][..n_head * d], "{mask:?} token {t}");
            }
        }
    }

    /// The AVX2 dot and axpy give the portable functions' bits (the backend's results do not
    /// depend on which one a CPU runs).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dot_and_axpy_equal_the_portable_ones() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        for n in [1usize, 7, 8, 20, 64, 67, 256] {
            let (a, b) = (rand_vec(n, 11 + n as u64), rand_vec(n, 12 + n as u64));
            // SAFETY: AVX2 checked above.
            assert_eq!(unsafe { dot_avx2(&a, &b) }.to_bits(), dot(&a, &b).to_bits(), "dot n={n}");
            let (mut o1, mut o2) = (rand_vec(n, 13), rand_vec(n, 13));
            axpy(&mut o1, 0.37, &b);
            unsafe { axpy_avx2(&mut o2, 0.37, &b) };
            assert_eq!(o1, o2, "axpy n={n}");
        }
    }

    /// An f16 or q8_0 cache gives exactly what an f32 cache holding the same (decoded) values
    /// gives, for decode and prefill, contiguous and paged.
    #[test]
    fn an_f16_or_q8_0_cache_equals_f32_holding_its_values() {
        use crate::dtype::DType;
        use crate::quant::{dequantize_row, quantize_row};
        let (n_head, n_kv, d, bs, n_blocks) = (6usize, 2usize, 64usize, 4usize, 7usize);
        let (s, kv_dim) = (n_blocks * bs, n_kv * d);
        let (k, v) = (rand_vec(s * kv_dim, 21), rand_vec(s * kv_dim, 22));
        let f16 = |x: &[f32]| x.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>();
        let q8 = |x: &[f32]| {
            let mut b = vec![0u8; x.len() / 32 * 34];
            quantize_row(DType::Q8_0, x, &mut b);
            b
        };
        let (kh, vh, kq, vq) = (f16(&k), f16(&v), q8(&k), q8(&v));
        let back = |b: &[u8]| {
            let mut x = vec![0.0; b.len() / 34 * 32];
            dequantize_row(DType::Q8_0, b, &mut x);
            x
        };
        let (kh32, vh32): (Vec<f32>, Vec<f32>) = (kh.iter().map(|h| h.to_f32()).collect(), vh.iter().map(|h| h.to_f32()).collect());
        let (kq32, vq32) = (back(&kq), back(&vq));
        assert_ne!(kq32, k, "q8_0 rounds");
        let table: Vec<u32> = vec![3, 0, 6, 1, 5, 2, 4];
        for positions in [vec![20u32], (0..11).collect::<Vec<u32>>()] {
            let q = rand_vec(positions.len() * n_head * d, 23);
            let rows: Vec<u32> = positions.iter().flat_map(|_| table.clone()).collect();
            for paging in [None, Some(Paging { table: &rows, cols: table.len(), block_size: bs })] {
                let run = |k: Kv, v: Kv| {
                    let mut o = vec![0.0; q.len()];
                    attention(&Pool::new(2), &q, k, v, Some(&positions), paging, n_head, n_kv, d, 0.125, AttnMask::Causal, &mut o);
                    o
                };
                assert_eq!(run(Kv::F16(&kh), Kv::F16(&vh)), run(Kv::F32(&kh32), Kv::F32(&vh32)), "f16, {} tokens", positions.len());
                assert_eq!(run(Kv::Q8_0(&kq), Kv::Q8_0(&vq)), run(Kv::F32(&kq32), Kv::F32(&vq32)), "q8_0, {} tokens", positions.len());
            }
        }
    }
}
