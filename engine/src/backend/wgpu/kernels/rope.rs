//! `Op::Rope`: one invocation per element (out of place), both layouts; and the fused RoPE of q
//! and k with the KV-cache writes (`fuse.rs`). Shader: rope.wgsl.

use super::{Buf, Cx, KernelKey, Step, grid};
use crate::graph::{Node, Op, RopeLayout, rows_cols};

pub(in super::super) fn build(cx: &Cx, node: &Node, ins: &[Buf], out: Buf) -> Vec<Step> {
    let (rows, cols) = rows_cols(&node.shape);
    let n = rows * cols;
    let uniforms = uniforms(node, n, cols);
    let factors = if uniforms[7] == 1 { ins[2] } else { Buf::Dummy };
    vec![Step {
        kernel: KernelKey::new("rope", "main", &[("WG", 256)]),
        uniforms,
        binds: vec![(1, ins[0]), (2, ins[1]), (3, out), (4, factors)],
        groups: grid(n.div_ceil(256), cx.max_groups),
    }]
}

/// The KV caches a fused RoPE writes: `[rows, cols]`, f32 or (`f16`) f16.
pub(in super::super) struct Caches {
    pub k: Buf,
    pub v: Buf,
    pub rows: usize,
    pub cols: usize,
    pub f16: bool,
}

/// The fused RoPE on q (`node`, inputs `ins`, output `out`, rounded to f16 with `round_q`) and
/// on k, with k and v written into their caches at `slots` (`fuse.rs` RopeScatter): `k`
/// [t, caches.cols].
#[allow(clippy::too_many_arguments)]
pub(in super::super) fn build_scatter(cx: &Cx, node: &Node, ins: &[Buf], out: Buf, round_q: bool, k: Buf, v: Buf, slots: Buf, caches: Caches) -> Vec<Step> {
    let (rows, cols) = rows_cols(&node.shape);
    let n = rows * cols;
    let nk = rows * caches.cols;
    let mut uniforms = uniforms(node, n, cols);
    uniforms.extend([nk as u32, caches.cols as u32, caches.rows as u32]);
    let factors = if uniforms[7] == 1 { ins[2] } else { Buf::Dummy };
    // An f16 cache takes one invocation per pair of values (a word).
    let per_k = if caches.f16 { nk / 2 } else { nk };
    vec![Step {
        kernel: KernelKey::new("rope", "rope_scatter", &[("WG", 256), ("CACHE_F16", caches.f16 as u32), ("ROUND_Q", round_q as u32)]),
        uniforms,
        binds: vec![(1, ins[0]), (2, ins[1]), (3, out), (4, factors), (5, k), (6, v), (7, slots), (8, caches.k), (9, caches.v)],
        groups: grid(n.div_ceil(256) + 2 * per_k.div_ceil(256), cx.max_groups),
    }]
}

/// rope.wgsl's Params up to `has_factors`.
fn uniforms(node: &Node, n: usize, cols: usize) -> Vec<u32> {
    let Op::Rope { layout, head_dim, n_rot, base, freq_scale, factors } = node.op else { unreachable!("rope::build called for {}", node.op.name()) };
    // Computed exactly as the reference does, on the host.
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let layout = match layout {
        RopeLayout::Normal => 0,
        RopeLayout::NeoX => 1,
    };
    vec![n as u32, cols as u32, head_dim as u32, n_rot as u32, layout, theta_scale.to_bits(), freq_scale.to_bits(), factors as u32]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Gpu1, rand_vec};
    use crate::dtype::DType;
    use crate::backend::{ParamDesc, ParamKind};
    use crate::graph::{Graph, RopeLayout, RopeParams};
    use crate::tensor::HostTensor;

    // θ is the same f32 on both sides (same repeated multiplication); sin and cos of arguments
    // up to ~4000 rad differ by a few ulps of the argument between libm and the GPU's range
    // reduction: 4000 · 2^-23 ≈ 5e-4 absolute on values of magnitude ≤ 1.
    #[test]
    fn wgpu_rope_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        // Frequency factors as Llama 3.1's: 1 for high frequencies, up to 8 for low ones.
        let factors = |n: usize| -> Vec<f32> { (0..n).map(|i| 1.0 + 7.0 * (i as f32 / n as f32).powi(2)).collect() };
        for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
            for &(t, heads, hd, n_rot, freq_scale, with_factors) in &[(1usize, 9usize, 64usize, 64usize, 1.0f32, false), (7, 3, 80, 48, 1.0, false), (5, 2, 256, 256, 0.125, false), (3, 4, 64, 64, 1.0, true), (6, 3, 80, 48, 0.5, true)] {
                let c = heads * hd;
                let mut g = Graph::new();
                let x = g.input(&[t, c], DType::F32);
                let pos = g.input(&[t], DType::U32);
                let ff = with_factors.then(|| {
                    let desc = ParamDesc { name: format!("rope_freqs{n_rot}"), shape: vec![n_rot / 2], dtype: DType::F32, kind: ParamKind::Weight };
                    let id = gpu.create_param(&desc, Some(&HostTensor::from_f32(vec![n_rot / 2], &factors(n_rot / 2)).unwrap()));
                    g.param(id, &desc)
                });
                let o = g.rope(x, pos, ff, RopeParams { layout, head_dim: hd, n_rot, base: 10000.0, freq_scale }).unwrap();
                g.output(o);
                let positions: Vec<u32> = (0..t as u32).map(|i| i * 577 % 4000).collect();
                let inputs = vec![HostTensor::from_f32(vec![t, c], &rand_vec(t * c, 5)).unwrap(), HostTensor::from_u32(vec![t], &positions).unwrap()];
                gpu.check(&format!("rope {layout:?} [{t}, {heads}x{hd}] n_rot {n_rot} scale {freq_scale} factors {with_factors}"), &g, &inputs, 1e-5);
            }
        }
    }
}
