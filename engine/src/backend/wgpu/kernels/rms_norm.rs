//! `Op::RmsNorm`: one workgroup of 64 per row, a shared-memory sum of squares, then each
//! invocation scales its own elements. Shader: rms_norm.wgsl.

use super::{Buf, Cx, KernelKey, Step, grid};
use crate::graph::{Node, Op, rows_cols};

pub(in super::super) fn build(cx: &Cx, node: &Node, w_len: usize, ins: &[Buf], out: Buf) -> Vec<Step> {
    let Op::RmsNorm { eps } = node.op else { unreachable!("rms_norm::build called for {}", node.op.name()) };
    // A weight narrower than the row normalizes each group of its width (per-head norm): the
    // rows the shader sees are those groups.
    let n: usize = node.shape.iter().product();
    let cols = rows_cols(&node.shape).1.min(w_len);
    let rows = n / cols;
    vec![Step {
        kernel: KernelKey::new("rms_norm", "main", &[("WG", 64)]),
        uniforms: vec![rows as u32, cols as u32, eps.to_bits()],
        binds: vec![(1, ins[0]), (2, ins[1]), (3, out)],
        groups: grid(rows, cx.max_groups),
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Gpu1, rand_vec};
    use crate::backend::{ParamDesc, ParamKind};
    use crate::dtype::DType;
    use crate::graph::Graph;
    use crate::tensor::HostTensor;

    // The reference sums squares in f64, the shader in f32 over a tree of 64 partial sums: the
    // relative error of the scale stays near 1e-7·log2(cols); 1e-5 of the largest output is ample.
    #[test]
    fn wgpu_rms_norm_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        // (rows, row width, weight width): a weight narrower than the row normalizes each head.
        for &(t, c, wc) in &[(1usize, 576usize, 576usize), (5, 97, 97), (3, 4099, 4099), (3, 1024, 256), (7, 5 * 80, 80)] {
            let desc = ParamDesc { name: format!("norm{c}x{wc}"), shape: vec![wc], dtype: DType::F32, kind: ParamKind::Weight };
            let w = HostTensor::from_f32(vec![wc], &rand_vec(wc, c as u64)).unwrap();
            let id = gpu.create_param(&desc, Some(&w));
            let mut g = Graph::new();
            let x = g.input(&[t, c], DType::F32);
            let wn = g.param(id, &desc);
            let o = g.rms_norm(x, wn, 1e-5).unwrap();
            g.output(o);
            gpu.check(&format!("rms_norm [{t}, {c}] by {wc}"), &g, &[HostTensor::from_f32(vec![t, c], &rand_vec(t * c, 9)).unwrap()], 1e-5);
        }
    }
}
