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
/// each row with its own block table. The first `t_rows` rows (1..=5) of the case, under `mask`.
pub(crate) fn paged_attention_case(t_rows: usize, mask: crate::graph::AttnMask) -> (crate::graph::Graph, Vec<crate::tensor::HostTensor>) {
    paged_attention_case_kv(t_rows, mask, crate::dtype::DType::F32)
}

/// `values` (random in [-1, 1)) as a tensor of `dtype` (f32, f16 or q8_0 rows of `shape`).
pub(crate) fn kv_tensor(shape: Vec<usize>, values: &[f32], dtype: crate::dtype::DType) -> crate::tensor::HostTensor {
    let cols = *shape.last().expect("a shape");
    let row = dtype.row_bytes(cols).expect("whole blocks");
    let mut bytes = vec![0u8; row * values.len() / cols];
    for (src, dst) in values.chunks(cols).zip(bytes.chunks_mut(row)) {
        crate::quant::quantize_row(dtype, src, dst);
    }
    crate::tensor::HostTensor::from_bytes(dtype, shape, bytes).unwrap()
}

/// [`paged_attention_case`] with keys and values kept in `kv` (a KV cache type).
pub(crate) fn paged_attention_case_kv(t_rows: usize, mask: crate::graph::AttnMask, kv: crate::dtype::DType) -> (crate::graph::Graph, Vec<crate::tensor::HostTensor>) {
    use crate::dtype::DType;
    use crate::tensor::HostTensor;
    let (n_head, n_kv, hd, bs, n_blocks, cols) = (6usize, 2usize, 64usize, 16usize, 23usize, 7usize);
    let s = n_blocks * bs;
    // (sequence, position) per query row.
    let rows = &[(0usize, 100u32), (1, 3), (2, 40), (2, 41), (2, 42)][..t_rows];
    let tables: [[u32; 7]; 3] = [[5, 17, 2, 9, 11, 20, 13], [22, 0, 0, 0, 0, 0, 0], [1, 14, 8, 0, 0, 0, 0]];
    let mut g = crate::graph::Graph::new();
    let q = g.input(&[t_rows, n_head * hd], DType::F32);
    let k = g.input(&[s, n_kv * hd], kv);
    let v = g.input(&[s, n_kv * hd], kv);
    let pos = g.input(&[t_rows], DType::U32);
    let table = g.input(&[t_rows, cols], DType::U32);
    let o = g.paged_attention(q, k, v, pos, table, n_head, n_kv, hd, 0.125, bs, mask).expect("a valid paged attention");
    g.output(o);
    let table_rows: Vec<u32> = rows.iter().flat_map(|&(sq, _)| tables[sq]).collect();
    let positions: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let inputs = vec![
        HostTensor::from_f32(vec![t_rows, n_head * hd], &rand_vec(t_rows * n_head * hd, 21)).unwrap(),
        kv_tensor(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 22), kv),
        kv_tensor(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 23), kv),
        HostTensor::from_u32(vec![t_rows], &positions).unwrap(),
        HostTensor::from_u32(vec![t_rows, cols], &table_rows).unwrap(),
    ];
    (g, inputs)
}

/// Batches whose indices point outside what they index, each with the words its error must
/// contain: a backend's `execute` must refuse every one (before any kernel runs).
pub(crate) fn out_of_range_cases() -> Vec<(&'static str, crate::graph::Graph, Vec<crate::tensor::HostTensor>)> {
    use crate::dtype::DType;
    use crate::graph::{AttnMask, Graph};
    use crate::tensor::HostTensor;
    let mut cases = Vec::new();
    // A block-table entry naming block 23 of a pool of 23.
    let (g, mut inputs) = paged_attention_case(5, AttnMask::Causal);
    let mut table = inputs[4].to_u32_vec();
    table[7 * 4 + 1] = 23;
    inputs[4] = HostTensor::from_u32(inputs[4].shape.clone(), &table).unwrap();
    cases.push(("block 23 of a block table is outside the 23 blocks", g, inputs));
    // A position past the 7 blocks of 16 its table row can name.
    let (g, mut inputs) = paged_attention_case(5, AttnMask::Causal);
    inputs[3] = HostTensor::from_u32(vec![5], &[100, 3, 40, 41, 112]).unwrap();
    cases.push(("position 112 is past the 112 keys", g, inputs));
    // A causal position past the keys of contiguous attention.
    let mut g = Graph::new();
    let q = g.input(&[2, 8], DType::F32);
    let k = g.input(&[5, 8], DType::F32);
    let pos = g.input(&[2], DType::U32);
    let o = g.attention(q, k, k, Some(pos), 1, 1, 8, 0.35, AttnMask::Causal).unwrap();
    g.output(o);
    let x = |n| HostTensor::from_f32(vec![n, 8], &rand_vec(n * 8, 3)).unwrap();
    cases.push(("position 5 is past the 5 keys", g, vec![x(2), x(5), HostTensor::from_u32(vec![2], &[4, 5]).unwrap()]));
    // An embedding id past the table, and a cache row past the cache.
    let mut g = Graph::new();
    let table = g.input(&[5, 8], DType::F32);
    let ids = g.input(&[3], DType::U32);
    let o = g.get_rows(table, ids).unwrap();
    g.output(o);
    cases.push(("id 5 is outside the 5 rows", g, vec![x(5), HostTensor::from_u32(vec![3], &[0, 5, 1]).unwrap()]));
    cases
}

/// Runs every [`out_of_range_cases`] on `backend`: each must be an error naming the bad index.
pub(crate) fn assert_refuses_out_of_range(backend: &mut dyn super::Backend) {
    use crate::dtype::DType;
    use crate::tensor::HostTensor;
    let mut cases = out_of_range_cases();
    // A cache row past the cache (a state of 4 rows).
    let desc = super::ParamDesc { name: "cache".into(), shape: vec![4, 8], dtype: DType::F32, kind: super::ParamKind::State };
    let id = backend.create_param(&desc, None).expect("a state param");
    let mut g = crate::graph::Graph::new();
    let dst = g.param(id, &desc);
    let src = g.input(&[2, 8], DType::F32);
    let rows = g.input(&[2], DType::U32);
    let o = g.scatter_rows(dst, src, rows).unwrap();
    g.output(o);
    let inputs = vec![HostTensor::from_f32(vec![2, 8], &rand_vec(16, 4)).unwrap(), HostTensor::from_u32(vec![2], &[1, 4]).unwrap()];
    cases.push(("row 4 is outside the 4 rows", g, inputs));
    for (what, g, inputs) in cases {
        match backend.execute(&g, &inputs) {
            Ok(_) => panic!("{}: ran a batch where {what}", backend.name()),
            Err(e) => assert!(e.to_string().contains(what), "{}: expected `{what}`, got: {e}", backend.name()),
        }
    }
}
