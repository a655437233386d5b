//! Test support shared by every backend's kernel tests.

/// Deterministic values in [-1, 1) (xorshift), fresh for every seed.
pub(crate) fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A paged-attention case for the GPU backends: query rows of three sequences at different
/// positions (the last one mid-prefill, several rows) over a shuffled pool of 23 blocks of 16,
/// each row with its own block table. The first `t_rows` rows (1..=5) of the case.
pub(crate) fn paged_attention_case(t_rows: usize) -> (crate::graph::Graph, Vec<crate::tensor::HostTensor>) {
    use crate::dtype::DType;
    use crate::tensor::HostTensor;
    let (n_head, n_kv, hd, bs, n_blocks, cols) = (6usize, 2usize, 64usize, 16usize, 23usize, 7usize);
    let s = n_blocks * bs;
    // (sequence, position) per query row.
    let rows = &[(0usize, 100u32), (1, 3), (2, 40), (2, 41), (2, 42)][..t_rows];
    let tables: [[u32; 7]; 3] = [[5, 17, 2, 9, 11, 20, 13], [22, 0, 0, 0, 0, 0, 0], [1, 14, 8, 0, 0, 0, 0]];
    let mut g = crate::graph::Graph::new();
    let q = g.input(&[t_rows, n_head * hd], DType::F32);
    let k = g.input(&[s, n_kv * hd], DType::F32);
    let v = g.input(&[s, n_kv * hd], DType::F32);
    let pos = g.input(&[t_rows], DType::U32);
    let table = g.input(&[t_rows, cols], DType::U32);
    let o = g.paged_attention(q, k, v, pos, table, n_head, n_kv, hd, bs).expect("a valid paged attention");
    g.output(o);
    let table_rows: Vec<u32> = rows.iter().flat_map(|&(sq, _)| tables[sq]).collect();
    let positions: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let inputs = vec![
        HostTensor::from_f32(vec![t_rows, n_head * hd], &rand_vec(t_rows * n_head * hd, 21)).unwrap(),
        HostTensor::from_f32(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 22)).unwrap(),
        HostTensor::from_f32(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 23)).unwrap(),
        HostTensor::from_u32(vec![t_rows], &positions).unwrap(),
        HostTensor::from_u32(vec![t_rows, cols], &table_rows).unwrap(),
    ];
    (g, inputs)
}
