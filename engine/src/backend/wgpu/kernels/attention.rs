//! `Op::Attention`: one workgroup of 64 per (query row, head), keys 64 at a time with an online
//! softmax; the causal key count is read from the positions buffer on the device, so a decode
//! plan is reused at every position. Shader: attention_decode.wgsl (decode and prefill).

use super::{Buf, Cx, KernelKey, Step, grid};
use crate::dtype::DType;
use crate::graph::{AttnMask, Graph, KvLayout, Node, Op, rows_cols};

pub(in super::super) fn build(cx: &Cx, g: &Graph, node: &Node, ins: &[Buf], out: Buf) -> Vec<Step> {
    let Op::Attention { n_head, n_kv_head, head_dim, scale, mask, kv } = node.op else { unreachable!("attention::build called for {}", node.op.name()) };
    let (t, _) = rows_cols(&node.shape);
    let (s, _) = rows_cols(&g.node(node.inputs[1]).shape);
    let causal = mask.is_causal();
    let window = match mask {
        AttnMask::SlidingWindow { window } => window as u32,
        _ => 0,
    };
    let positions = if causal { ins[3] } else { Buf::Dummy };
    let (block_size, table_cols, table) = match kv {
        KvLayout::Contiguous => (0, 0, Buf::Dummy),
        KvLayout::Paged { block_size } => (block_size, g.node(node.inputs[4]).shape[1], ins[4]),
    };
    let kv_type = match g.node(node.inputs[1]).dtype {
        DType::F16 => 1,
        DType::Q8_0 => 2,
        _ => 0,
    };
    vec![Step {
        kernel: KernelKey::new("attention_decode", "main", &[("WG", 64), ("KV", kv_type)]),
        uniforms: vec![t as u32, s as u32, n_head as u32, n_kv_head as u32, head_dim as u32, causal as u32, scale.to_bits(), block_size as u32, table_cols as u32, window],
        binds: vec![(1, ins[0]), (2, ins[1]), (3, ins[2]), (4, positions), (5, out), (6, table)],
        groups: grid(t * n_head, cx.max_groups),
    }]
}

/// Whether the shader can run this node (it keeps head_dim / 64 ≤ 4 accumulators per invocation).
pub(in super::super) fn supported(head_dim: usize) -> bool {
    head_dim <= 256
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Gpu1, rand_vec};
    use crate::dtype::DType;
    use crate::graph::{AttnMask, Graph};
    use crate::tensor::HostTensor;

    // Both sides run an online softmax in f32, the reference one key at a time, the shader 64 at
    // a time: rescaling in a different order moves results by a few ulps per key; 1e-5 of the
    // largest output covers a few hundred keys.
    #[test]
    fn wgpu_attention_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        for mask in [AttnMask::Causal, AttnMask::None, AttnMask::SlidingWindow { window: 37 }, AttnMask::SlidingWindow { window: 70 }] {
            for &(t, s, n_head, n_kv, hd) in &[(1usize, 131usize, 9usize, 3usize, 64usize), (13, 70, 4, 4, 80), (3, 200, 2, 1, 128), (5, 150, 4, 1, 256)] {
                let mut g = Graph::new();
                let q = g.input(&[t, n_head * hd], DType::F32);
                let k = g.input(&[s, n_kv * hd], DType::F32);
                let v = g.input(&[s, n_kv * hd], DType::F32);
                let pos = g.input(&[t], DType::U32);
                let o = g.attention(q, k, v, Some(pos), n_head, n_kv, hd, 0.7 / (hd as f32).sqrt(), mask).unwrap();
                g.output(o);
                let positions: Vec<u32> = (0..t as u32).map(|i| (s as u32 - 1 - i * 5).min(s as u32 - 1)).collect();
                let inputs = vec![
                    HostTensor::from_f32(vec![t, n_head * hd], &rand_vec(t * n_head * hd, 11)).unwrap(),
                    HostTensor::from_f32(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 12)).unwrap(),
                    HostTensor::from_f32(vec![s, n_kv * hd], &rand_vec(s * n_kv * hd, 13)).unwrap(),
                    HostTensor::from_u32(vec![t], &positions).unwrap(),
                ];
                gpu.check(&format!("attention {mask:?} t {t} s {s} heads {n_head}/{n_kv} hd {hd}"), &g, &inputs, 1e-5);
            }
        }
    }

    /// Three sequences of different lengths in one batch over a shuffled pool of blocks of 16,
    /// one of them mid-prefill (several rows of the same sequence).
    #[test]
    fn wgpu_paged_attention_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        for mask in [AttnMask::Causal, AttnMask::SlidingWindow { window: 19 }] {
            for kv in DType::KV_TYPES {
                let (g, inputs) = crate::backend::test_util::paged_attention_case_kv(5, mask, kv);
                gpu.check(&format!("paged attention {mask:?}, {kv} cache"), &g, &inputs, 1e-5);
            }
        }
    }

    /// Block-table entries, positions and row ids outside their buffers are refused by wgpu's
    /// own `execute` (a shader would read or write out of range silently).
    #[test]
    fn wgpu_refuses_indices_out_of_range() {
        let Some(mut gpu) = Gpu1::new() else { return };
        crate::backend::test_util::assert_refuses_out_of_range(&mut gpu.wgpu);
    }
}
