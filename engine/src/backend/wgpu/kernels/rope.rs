//! `Op::Rope`: one invocation per element (out of place), both layouts. Shader: rope.wgsl.

use super::{Buf, Cx, KernelKey, Step, grid};
use crate::graph::{Node, Op, RopeLayout, rows_cols};

pub(in super::super) fn build(cx: &Cx, node: &Node, ins: &[Buf], out: Buf) -> Vec<Step> {
    let Op::Rope { layout, head_dim, n_rot, base } = node.op else { unreachable!("rope::build called for {}", node.op.name()) };
    let (rows, cols) = rows_cols(&node.shape);
    let n = rows * cols;
    // Computed exactly as the reference does, on the host.
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let layout = match layout {
        RopeLayout::Normal => 0,
        RopeLayout::NeoX => 1,
    };
    vec![Step {
        kernel: KernelKey::new("rope", "main", &[("WG", 256)]),
        uniforms: vec![n as u32, cols as u32, head_dim as u32, n_rot as u32, layout, theta_scale.to_bits()],
        binds: vec![(1, ins[0]), (2, ins[1]), (3, out)],
        groups: grid(n.div_ceil(256), cx.max_groups),
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Gpu1, rand_vec};
    use crate::dtype::DType;
    use crate::graph::{Graph, RopeLayout};
    use crate::tensor::HostTensor;

    // θ is the same f32 on both sides (same repeated multiplication); sin and cos of arguments
    // up to ~4000 rad differ by a few ulps of the argument between libm and the GPU's range
    // reduction: 4000 · 2^-23 ≈ 5e-4 absolute on values of magnitude ≤ 1.
    #[test]
    fn wgpu_rope_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
            for &(t, heads, hd, n_rot) in &[(1usize, 9usize, 64usize, 64usize), (7, 3, 80, 48)] {
                let c = heads * hd;
                let mut g = Graph::new();
                let x = g.input(&[t, c], DType::F32);
                let pos = g.input(&[t], DType::U32);
                let o = g.rope(x, pos, layout, hd, n_rot, 10000.0).unwrap();
                g.output(o);
                let positions: Vec<u32> = (0..t as u32).map(|i| i * 577 % 4000).collect();
                let inputs = vec![HostTensor::from_f32(vec![t, c], &rand_vec(t * c, 5)).unwrap(), HostTensor::from_u32(vec![t], &positions).unwrap()];
                gpu.check(&format!("rope {layout:?} [{t}, {heads}x{hd}] n_rot {n_rot}"), &g, &inputs, 1e-5);
            }
        }
    }
}
