//! Attention routes against the CPU: paged prefill mixed with decode rows (attention_prefill and
//! attention_decode on one batch, each taking its own rows), batched decode with key splits, and
//! sliding windows that start in the middle of a key split; the paged ones over a pool kept in
//! every KV cache type (written by scatter_rows in the same graph). Skips without a CUDA device
//! (see `Pair::new`).

use super::{Pair, f32_input, kv_cache};
use crate::backend::test_util::rand_vec;
use crate::dtype::DType;
use crate::graph::{AttnMask, Graph};
use crate::tensor::HostTensor;

const N_HEAD: usize = 6;
const N_KV: usize = 2; // query heads 0..3 read kv head 0, 3..6 kv head 1
const BS: usize = 16;

/// `n` distinct blocks of a pool of `pool` in a scrambled order (n ≤ pool).
fn blocks(n: usize, pool: usize, seed: u64) -> Vec<u32> {
    let mut all: Vec<u32> = (0..pool as u32).collect();
    let r = rand_vec(pool, seed);
    for i in (1..pool).rev() {
        let j = (((r[i] + 1.0) * 0.5) * (i + 1) as f32) as usize % (i + 1);
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

/// A paged batch: row i belongs to sequence `rows[i].0` (its block table `tables[seq]`) at
/// position `rows[i].1`. The pool is kept in `kv`: f32 inputs, or a cache of f16 or q8_0 that
/// scatter_rows fills from f32 inputs in the same graph.
#[allow(clippy::too_many_arguments)]
fn paged_case(p: &mut Pair, rows: &[(usize, u32)], tables: &[Vec<u32>], n_blocks: usize, head_dim: usize, mask: AttnMask, kv: DType) -> (Graph, Vec<HostTensor>) {
    let (t, cols, s) = (rows.len(), tables[0].len(), n_blocks * BS);
    let mut g = Graph::new();
    let q = g.input(&[t, N_HEAD * head_dim], DType::F32);
    let k = g.input(&[s, N_KV * head_dim], DType::F32);
    let v = g.input(&[s, N_KV * head_dim], DType::F32);
    let pos = g.input(&[t], DType::U32);
    let table = g.input(&[t, cols], DType::U32);
    let at = (kv != DType::F32).then(|| g.input(&[s], DType::U32));
    let (k, v) = (kv_cache(p, &mut g, kv, k, at), kv_cache(p, &mut g, kv, v, at));
    let o = g.paged_attention(q, k, v, pos, table, N_HEAD, N_KV, head_dim, 0.8 / (head_dim as f32).sqrt(), BS, mask).expect("a valid paged attention");
    g.output(o);
    let table_rows: Vec<u32> = rows.iter().flat_map(|&(sq, _)| tables[sq].clone()).collect();
    let positions: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let mut inputs = vec![
        f32_input(&[t, N_HEAD * head_dim], 31),
        f32_input(&[s, N_KV * head_dim], 32),
        f32_input(&[s, N_KV * head_dim], 33),
        HostTensor::from_u32(vec![t], &positions).unwrap(),
        HostTensor::from_u32(vec![t, cols], &table_rows).unwrap(),
    ];
    if at.is_some() {
        inputs.push(HostTensor::from_u32(vec![s], &(0..s as u32).collect::<Vec<_>>()).unwrap());
    }
    (g, inputs)
}

/// One batch of prefill chunks and decode rows over a pool of 30 blocks of 16 (6 per table):
/// row 0 a decode (C); rows 1..17 a prefill chunk of A at positions 40..55, whose last row sits
/// alone in the second 16-row tile; a decode of B; a prefill of D from position 0 (19 rows over
/// two tiles); a row of E, whose table is D's (shared blocks) at another position, next to D's
/// rows; a decode of F at the last position its table reaches. head_dim 64 and 80 take
/// attention_prefill for A, D and E and attention_decode for C, B and F; 256 takes
/// attention_decode for every row. Every KV cache type (q8_0 heads are whole blocks of 32: not 80).
#[test]
fn paged_prefill_mixed_with_decode_rows_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let pool = blocks(30, 30, 7);
    // A, B, C, D (= E), F: six blocks each, some shared between tables.
    let tables: Vec<Vec<u32>> = vec![pool[0..6].to_vec(), pool[6..12].to_vec(), pool[12..18].to_vec(), pool[18..24].to_vec(), pool[21..27].to_vec()];
    let (a, b, c, d, f) = (0, 1, 2, 3, 4);
    let mut rows = vec![(c, 5u32)];
    rows.extend((40..56).map(|pos| (a, pos)));
    rows.push((b, 70));
    rows.extend((0..19).map(|pos| (d, pos)));
    rows.push((d, 11)); // E: D's table, its own position
    rows.push((f, 95));
    assert_eq!(rows.len(), 39);
    for kv in DType::KV_TYPES {
        for head_dim in [64usize, 80, 256] {
            if !head_dim.is_multiple_of(kv.block_len()) {
                continue;
            }
            for mask in [AttnMask::Causal, AttnMask::SlidingWindow { window: 23 }] {
                let (g, inputs) = paged_case(&mut p, &rows, &tables, 30, head_dim, mask, kv);
                p.check(&format!("paged mixed batch, {kv} cache, d={head_dim} {mask:?}"), &g, &inputs, 1e-4);
            }
        }
    }
    // A batch that is one sequence's prefill (every table row equal) and one of decodes only.
    let prefill: Vec<(usize, u32)> = (3..40).map(|pos| (a, pos)).collect();
    let decodes: Vec<(usize, u32)> = vec![(a, 50), (b, 3), (c, 95), (d, 0), (f, 17)];
    for (what, rows) in [("one prefill", prefill), ("decodes", decodes)] {
        let (g, inputs) = paged_case(&mut p, &rows, &tables, 30, 64, AttnMask::Causal, DType::F32);
        p.check(&format!("paged {what}"), &g, &inputs, 1e-4);
    }
}

/// Batched decode over long tables: 8 rows × 6 heads split their 1024 reachable keys (4 splits
/// of 256); windows of 300 start inside the second and third split, which a split that ran past
/// its own end would count twice. Every KV cache type.
#[test]
fn batched_decode_splits_keys_and_windows_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let n_blocks = 80;
    let tables: Vec<Vec<u32>> = (0..8).map(|i| blocks(64, n_blocks, 40 + i)).collect();
    let positions = [1023u32, 900, 3, 511, 512, 700, 0, 256];
    let rows: Vec<(usize, u32)> = positions.iter().enumerate().map(|(i, &pos)| (i, pos)).collect();
    for kv in DType::KV_TYPES {
        for head_dim in [64, 256] {
            for mask in [AttnMask::Causal, AttnMask::SlidingWindow { window: 300 }] {
                let (g, inputs) = paged_case(&mut p, &rows, &tables, n_blocks, head_dim, mask, kv);
                p.check(&format!("batched decode, {kv} cache, d={head_dim} {mask:?}"), &g, &inputs, 1e-4);
            }
        }
    }
}

/// Contiguous decode (t = 1, 600 keys in 3 splits) at positions where a window of 300 starts in
/// the first or second split, or covers everything.
#[test]
fn decode_window_starting_mid_split_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let (s, head_dim) = (600, 64);
    for pos in [0u32, 299, 300, 590, 599] {
        let mut g = Graph::new();
        let q = g.input(&[1, N_HEAD * head_dim], DType::F32);
        let k = g.input(&[s, N_KV * head_dim], DType::F32);
        let v = g.input(&[s, N_KV * head_dim], DType::F32);
        let pos_in = g.input(&[1], DType::U32);
        let o = g.attention(q, k, v, Some(pos_in), N_HEAD, N_KV, head_dim, 0.125, AttnMask::SlidingWindow { window: 300 }).unwrap();
        g.output(o);
        let inputs = [f32_input(&[1, N_HEAD * head_dim], 51), f32_input(&[s, N_KV * head_dim], 52), f32_input(&[s, N_KV * head_dim], 53), HostTensor::from_u32(vec![1], &[pos]).unwrap()];
        p.check(&format!("decode window 300 at {pos}"), &g, &inputs, 1e-4);
    }
}

/// Prefill under other head groupings: attention_prefill puts the query heads of one kv head in
/// one block (up to 16 of them; 32 per kv head takes two blocks), 16 / group query rows each.
#[test]
fn prefill_head_groupings_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let (t, s, head_dim) = (21, 64, 64);
    for (n_head, n_kv) in [(32, 1), (9, 3), (8, 8), (64, 2)] {
        let mut g = Graph::new();
        let q = g.input(&[t, n_head * head_dim], DType::F32);
        let k = g.input(&[s, n_kv * head_dim], DType::F32);
        let v = g.input(&[s, n_kv * head_dim], DType::F32);
        let pos = g.input(&[t], DType::U32);
        let o = g.attention(q, k, v, Some(pos), n_head, n_kv, head_dim, 0.125, AttnMask::Causal).unwrap();
        g.output(o);
        let positions: Vec<u32> = (20..20 + t as u32).collect();
        let inputs = [f32_input(&[t, n_head * head_dim], 61), f32_input(&[s, n_kv * head_dim], 62), f32_input(&[s, n_kv * head_dim], 63), HostTensor::from_u32(vec![t], &positions).unwrap()];
        p.check(&format!("prefill heads {n_head}/{n_kv}"), &g, &inputs, 1e-4);
    }
}
